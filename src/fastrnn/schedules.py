"""Learning-rate schedules (per epoch).  Each is a callback for ``Model.fit`` (it sets
``optimizer.lr`` at the start of every epoch) and can also be driven by hand, as PyTorch's
schedulers: ``sched = StepLR(opt, step_size=10); ... sched.step()`` once per epoch.

The base rate is the optimizer's ``lr`` when the schedule first sees the optimizer."""
import math

from fastrnn.callbacks import Callback, _Monitor
from fastrnn.layers._base import check_int

__all__ = ["LRSchedule", "StepLR", "ExponentialLR", "CosineLR", "InverseTimeDecay",
           "ReduceLROnPlateau"]


def _factor(name, value, low=0.0, high=1.0, high_ok=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low < value < high or (high_ok and value == high)):
        raise ValueError(f"{name} must be in ({low}, {high}{']' if high_ok else ')'}, got "
                         f"{value!r}")
    return float(value)


class LRSchedule(Callback):
    """Base: subclasses define ``lr_at(epoch)`` from ``self.base_lr`` (epoch counted from 0)."""

    def __init__(self, optimizer=None):
        self.optimizer = optimizer
        self.base_lr = None if optimizer is None else optimizer.lr
        self.epoch = 0

    def set_context(self, model, optimizer):
        """Called by fit: the model and its optimizer (used when the schedule was built
        without one)."""
        self.model = model
        if self.optimizer is None:
            self.optimizer = optimizer
        if self.base_lr is None:
            self.base_lr = self.optimizer.lr

    def lr_at(self, epoch):
        """The learning rate for `epoch` (counted from 0). Subclasses implement it."""
        raise NotImplementedError

    def on_epoch_begin(self, epoch, logs=None):
        """Set the optimizer's lr for `epoch`."""
        self.epoch = epoch
        self.optimizer.lr = self.lr_at(epoch)

    def step(self):
        """Advance one epoch by hand (PyTorch style) and set the optimizer's lr."""
        if self.optimizer is None:
            raise RuntimeError("this schedule has no optimizer: pass it to the constructor")
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)
        return self.optimizer.lr


class StepLR(LRSchedule):
    """lr = base * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer=None, step_size=10, gamma=0.1):
        super().__init__(optimizer)
        self.step_size = check_int("step_size", step_size)
        self.gamma = _factor("gamma", gamma)

    def lr_at(self, epoch):
        """base_lr * gamma ** (epoch // step_size)."""
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRSchedule):
    """lr = base * gamma ** epoch."""

    def __init__(self, optimizer=None, gamma=0.95):
        super().__init__(optimizer)
        self.gamma = _factor("gamma", gamma)

    def lr_at(self, epoch):
        """base_lr * gamma ** epoch."""
        return self.base_lr * self.gamma ** epoch


class CosineLR(LRSchedule):
    """Linear warm-up over `warmup_epochs` (from base/warmup_epochs up to base), then cosine
    annealing from base to `min_lr` at epoch `total_epochs` (held there afterwards)."""

    def __init__(self, optimizer=None, total_epochs=100, min_lr=0.0, warmup_epochs=0):
        super().__init__(optimizer)
        self.total_epochs = check_int("total_epochs", total_epochs)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
        if self.warmup_epochs >= self.total_epochs:
            raise ValueError(f"warmup_epochs ({warmup_epochs}) must be below total_epochs "
                             f"({total_epochs})")
        if isinstance(min_lr, bool) or not isinstance(min_lr, (int, float)) or min_lr < 0:
            raise ValueError(f"min_lr must be a number >= 0, got {min_lr!r}")
        self.min_lr = float(min_lr)

    def lr_at(self, epoch):
        """Linear warm-up to base_lr, then a cosine from base_lr down to min_lr at
        total_epochs."""
        w = self.warmup_epochs
        if epoch < w:
            return self.base_lr * (epoch + 1) / w
        span = self.total_epochs - w
        progress = min(epoch - w, span) / span
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class InverseTimeDecay(LRSchedule):
    """lr = base / (1 + decay * epoch)."""

    def __init__(self, optimizer=None, decay=0.1):
        super().__init__(optimizer)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0:
            raise ValueError(f"decay must be a number >= 0, got {decay!r}")
        self.decay = float(decay)

    def lr_at(self, epoch):
        """base_lr / (1 + decay * epoch)."""
        return self.base_lr / (1 + self.decay * epoch)


class ReduceLROnPlateau(LRSchedule):
    """Multiply lr by `factor` when `monitor` has not improved (by more than `min_delta`) for
    `patience` epochs; then wait `cooldown` epochs; never below `min_lr`.  By hand:
    ``sched.step(value)``."""

    def __init__(self, optimizer=None, monitor="val_loss", factor=0.1, patience=10,
                 min_delta=1e-4, cooldown=0, min_lr=0.0, mode="auto"):
        super().__init__(optimizer)
        self._mon = _Monitor(monitor, mode, min_delta)
        self.factor = _factor("factor", factor, high_ok=False)
        self.patience = check_int("patience", patience, 0)
        self.cooldown = check_int("cooldown", cooldown, 0)
        if isinstance(min_lr, bool) or not isinstance(min_lr, (int, float)) or min_lr < 0:
            raise ValueError(f"min_lr must be a number >= 0, got {min_lr!r}")
        self.min_lr = float(min_lr)
        self.wait = 0
        self.cooldown_left = 0

    def on_epoch_begin(self, epoch, logs=None):
        """Nothing to do at an epoch's start: the lr changes only on a plateau."""
        self.epoch = epoch                    # the rate changes only on plateaus

    def on_epoch_end(self, epoch, logs=None):
        """Feed the monitored value of the epoch's logs to ``step``."""
        self.step(self._mon.value(logs))

    def step(self, value):
        if self.optimizer is None:
            raise RuntimeError("this schedule has no optimizer: pass it to the constructor")
        value = float(value)
        if self._mon.improved(value):
            self._mon.best = value
            self.wait = 0
        else:
            self.wait += 1
        if self.cooldown_left > 0:           # bad epochs in the cool-down do not count
            self.cooldown_left -= 1
            self.wait = 0
        if self.wait > self.patience:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.cooldown_left = self.cooldown
            self.wait = 0
        return self.optimizer.lr
