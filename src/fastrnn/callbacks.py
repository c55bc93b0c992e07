"""Callbacks for ``Model.fit``: EarlyStopping, ModelCheckpoint, CSVLogger (and the LR
schedules in fastrnn.schedules, which are callbacks too).

A callback gets ``set_context(model, optimizer)`` before training, then
``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``, ``on_batch_end(step, logs)``,
``on_epoch_end(epoch, logs)`` (logs: the epoch's loss, metrics and val_* entries) and
``on_train_end(logs)``.  Setting ``model.stop_training = True`` ends training after the
current epoch."""
import csv
import math
import os

import numpy as np

from fastrnn._io import save
from fastrnn.layers._base import check_int

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "CSVLogger"]


class Callback:
    """Base of fit's callbacks: override the ``on_*`` hooks you need; ``self.model`` and
    ``self.optimizer`` are set before training starts.  ``rank0_only = True``: in
    distributed training (``fit(distributed=True)``) only rank 0 runs it (for callbacks that
    write files)."""

    model = None
    optimizer = None
    rank0_only = False

    def set_context(self, model, optimizer):
        """Called by fit before training: the model and the optimizer it drives."""
        self.model = model
        self.optimizer = optimizer

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""
        pass

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of each epoch (counted from 0)."""
        pass

    def on_batch_end(self, step, logs=None):
        """Called after each optimizer step (`step` counted from 1 in the epoch; logs: the
        batch's loss)."""
        pass

    def on_epoch_end(self, epoch, logs=None):
        """Called after each epoch with its logs (loss, metrics, val_*, lr); set
        ``self.model.stop_training = True`` to stop."""
        pass

    def on_train_end(self, logs=None):
        """Called once after training (logs: the last epoch's)."""
        pass


class _Monitor:
    """Tracks the best value of a logged quantity (min for losses/errors, max otherwise)."""

    def __init__(self, monitor, mode, min_delta):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if any(k in monitor for k in ("acc", "accuracy")) else "min"
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs):
        if not logs or self.monitor not in logs:
            raise KeyError(f"monitor {self.monitor!r} is not among the logged values "
                           f"{sorted(logs or {})} (val_* needs validation_data)")
        return float(logs[self.monitor])

    def improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs;
    with ``restore_best_weights`` the model gets the weights of its best epoch back."""

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        self._mon = _Monitor(monitor, mode, min_delta)
        self.patience = check_int("patience", patience, 0)
        self.restore_best_weights = bool(restore_best_weights)
        self.stopped_epoch = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        """Start with no best value and no waiting."""
        self._mon.best = math.inf if self._mon.mode == "min" else -math.inf
        self.wait, self.best_weights, self.stopped_epoch = 0, None, None

    def on_epoch_end(self, epoch, logs=None):
        """Stop training when the monitored value has not improved for `patience` epochs."""
        value = self._mon.value(logs)
        if self._mon.improved(value):
            self._mon.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        """With ``restore_best_weights``, put the best epoch's weights back."""
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (``fastrnn.save``: atomic) at each epoch end, or only when `monitor`
    improved with ``save_best_only``.  `path` may contain ``{epoch}`` and any logged name,
    e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.fastrnn"`` (epoch counted from 1)."""

    rank0_only = True       # distributed training: only rank 0 writes

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self._mon = _Monitor(monitor, mode, 0.0) if save_best_only else None
        self.saved = []

    def on_train_begin(self, logs=None):
        """Start with no best value."""
        if self._mon is not None:
            self._mon.best = math.inf if self._mon.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        """Save the model (atomically) after this epoch, or only when the monitored value
        improved (``save_best_only``)."""
        if self._mon is not None:
            value = self._mon.value(logs)
            if not self._mon.improved(value):
                return
            self._mon.best = value
        path = self.path.format(epoch=epoch + 1, **(logs or {}))
        save(self.model, path)
        self.saved.append(path)


class CSVLogger(Callback):
    """Write one CSV row per epoch (epoch, then the logged values) to `path`; `append`
    keeps an existing file's rows."""

    rank0_only = True       # distributed training: only rank 0 writes

    def __init__(self, path, append=False, separator=","):
        self.path = os.fspath(path)
        self.append = bool(append)
        self.separator = separator
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        """Open the file (appending with ``append=True``)."""
        exists = self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0
        self._file = open(self.path, "a" if self.append else "w", newline="")
        self._writer = None
        self._keys = None
        self._header_done = exists

    def on_epoch_end(self, epoch, logs=None):
        """Write one row: the epoch and its logs."""
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            self._writer = csv.writer(self._file, delimiter=self.separator)
            if not self._header_done:
                self._writer.writerow(["epoch"] + self._keys)
        self._writer.writerow([epoch] + [_fmt(logs.get(k, "")) for k in self._keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v
