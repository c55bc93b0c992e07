"""The training loop behind ``Model.fit``, ``Model.evaluate`` and ``Model.predict``.

Data are sample-major, as in Keras: ``x[i]`` and ``y[i]`` are sample i (``x`` may also be a
list of variable-length sequences, padded per batch).  Models whose recurrent layers are
time-major (``batch_first=False``, the default) get each batch transposed to ``(T, B, ...)``,
and sequence targets are transposed to match; ``predict`` returns sample-major arrays.
With ``lengths`` (or ragged ``x``), sequence outputs are masked past each row's end in the
loss and the metrics.
"""
import copy
import io
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings

import numpy as np

from fastrnn import clip as _clip
from fastrnn import losses as _losses
from fastrnn import metrics as _metrics
from fastrnn import optim as _optim
from fastrnn.callbacks import Callback
from fastrnn.data import batches, check_stream_batch_size, pad_sequences, stream_batch_size
from fastrnn.init import as_generator
from fastrnn.layers._base import check_int
from fastrnn.layers._recurrent import sequence_mask

__all__ = ["History", "fit", "evaluate", "predict"]


class History:
    """What ``fit`` returns.

    ``history`` maps each logged name (loss, metrics, val_*, lr) to its per-epoch values,
    aligned with ``epoch`` (the epochs run): an epoch that logged no value for a name (an
    epoch cut short by Ctrl-C is not validated) holds NaN there.  ``steps`` counts the
    optimizer steps applied; ``stop_reason`` says why training ended early (None when all
    epochs ran); ``interrupted`` is True after Ctrl-C."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.steps = 0
        self.stop_reason = None
        self.interrupted = False
        self.wall_time = 0.0

    def append(self, epoch, logs):
        """Record one epoch's logs (names missing from earlier or from this epoch get NaN)."""
        for k in logs:
            self.history.setdefault(k, [float("nan")] * len(self.epoch))
        self.epoch.append(epoch)
        for k, values in self.history.items():
            values.append(logs.get(k, float("nan")))

    def last(self):
        """The last epoch's logs (NaN where it logged nothing)."""
        return {k: v[-1] for k, v in self.history.items()}

    def last_value(self, name):
        """``(value, epoch)`` of the last epoch that logged a finite `name`, or
        ``(nan, None)``."""
        for value, epoch in zip(reversed(self.history.get(name, [])), reversed(self.epoch)):
            if np.isfinite(value):
                return value, epoch
        return float("nan"), None

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, steps={self.steps}, last={self.last()})"


# ----------------------------------------------------------------------------------------
# layout of batches

class _Layout:
    """How batches meet the model: transpose x to time-major? where is the output's time axis
    (None: no time axis)?"""

    def __init__(self, model, sample_shape):
        self.swap_x = False
        self.out_time_axis = None
        bf = getattr(model, "_batch_first", lambda: None)()
        if bf is None or len(sample_shape) < 1:
            return
        lead = ("B", "T") if bf else ("T", "B")
        try:
            out = model.output_shape(lead + tuple(sample_shape[1:]))
        except Exception:
            return
        self.swap_x = not bf
        if "T" in out:
            self.out_time_axis = out.index("T")

    def x(self, xb):
        return np.swapaxes(xb, 0, 1) if self.swap_x and np.ndim(xb) >= 2 else xb

    def y(self, yb):
        """Targets in the output's layout (sample-major y with a time axis at 1)."""
        if yb is not None and self.out_time_axis == 0 and np.ndim(yb) >= 2:
            return np.swapaxes(yb, 0, 1)
        return yb

    def mask(self, lengths, out):
        if lengths is None or self.out_time_axis is None:
            return None
        T = np.shape(out)[self.out_time_axis]
        return sequence_mask(lengths, T, batch_first=self.out_time_axis == 1)

    def unbatch(self, out):
        return np.swapaxes(out, 0, 1) if self.out_time_axis == 0 else out


def _sample_shape(x):
    if isinstance(x, (list, tuple)):
        first = np.asarray(x[0])
        return (None,) + first.shape[1:]
    return np.shape(x)[1:]


def _check_data(x, y, lengths):
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError("x is empty")
    else:
        x = np.asarray(x)
        if x.ndim < 1 or len(x) == 0:
            raise ValueError(f"x must hold at least one sample (axis 0), got shape {x.shape}")
    n = len(x)
    if y is not None:
        if not isinstance(y, (list, tuple)):
            y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"x and y must have the same number of samples (axis 0), got "
                             f"{n} and {len(y)}")
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
            raise ValueError(f"lengths must be {n} integers (one per sample), got "
                             f"{lengths.dtype} {lengths.shape}")
    return x, y, lengths


def _is_stateful(model):
    return any(getattr(layer, "stateful", False) for _, layer in model.named_layers())


def _reset_states(model):
    for _, layer in model.named_layers():
        if getattr(layer, "stateful", False):
            layer.reset_states()


def _forward(model, xb, lb):
    """The model's forward in its current mode (fit/evaluate set train()/eval())."""
    if lb is None:
        return model.forward(xb)
    return model.forward(xb, lengths=lb)


# ----------------------------------------------------------------------------------------
# progress

def _terminal_width(stream):
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return shutil.get_terminal_size((80, 24)).columns


class _Progress:
    """A one-line progress bar on a terminal (steps, loss, sequences/s, ETA; then
    "validating" while the validation set runs), fitted to the terminal's width; one line
    per epoch otherwise (verbose=1) or always (verbose=2); nothing with verbose=0."""

    def __init__(self, verbose, epochs, steps, stream=None):
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.epochs, self.steps = epochs, steps
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = verbose == 1 and isatty
        self.lines = verbose == 2 or (verbose == 1 and not isatty)
        self.last_draw = 0.0

    def begin(self, epoch):
        self.epoch = epoch
        self.t0 = time.perf_counter()
        self.seen = 0
        self.step = 0

    def _draw(self, parts, done):
        """Write `parts` (most important first) after a bar `done` (0..1) full, dropping
        trailing parts and shrinking the bar to fit the terminal (no wrapped redraws)."""
        width = _terminal_width(self.stream) - 1
        head = f"Epoch {self.epoch + 1}/{self.epochs}"
        line = None
        for keep in range(len(parts), 0, -1):        # a bar of at least 10 and the most parts
            text = " ".join(parts[:keep])
            bar_w = min(24, width - len(head) - len(text) - 4)
            if bar_w >= 10:
                full = int(bar_w * done)
                bar = "=" * full + (">" if full < bar_w else "") + " " * (bar_w - full - 1)
                line = f"{head} [{bar[:bar_w]}] {text}"
                break
        if line is None:                             # too narrow for a bar
            keep = len(parts)
            while keep > 1 and len(head) + 1 + len(" ".join(parts[:keep])) > width:
                keep -= 1
            line = f"{head} {' '.join(parts[:keep])}"
        self.stream.write("\r" + line[:width] + "\033[K")
        self.stream.flush()

    def update(self, step, n, loss):
        self.seen += n
        self.step = step
        if not self.bar:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and step < self.steps:
            return
        self.last_draw = now
        elapsed = now - self.t0
        rate = self.seen / elapsed if elapsed > 0 else 0.0
        eta = elapsed / step * (self.steps - step) if step else 0.0
        self._draw([f"{step}/{self.steps}", f"loss {loss:.4g}", f"ETA {eta:.0f}s",
                    f"{rate:,.0f} seq/s"], step / self.steps)

    def validating(self):
        if self.bar:
            self._draw(["validating ...", f"{self.step}/{self.steps}"], 1.0)

    def end(self, logs, interrupted=False):
        if not (self.bar or self.lines):
            return
        elapsed = time.perf_counter() - self.t0
        rate = self.seen / elapsed if elapsed > 0 else 0.0
        parts = " - ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "lr")
        cut = f"stopped at step {self.step}/{self.steps} - " if interrupted else ""
        line = (f"Epoch {self.epoch + 1}/{self.epochs} - {cut}{elapsed:.1f}s - {rate:,.0f} "
                f"seq/s - {parts}")
        self.stream.write(f"\r{line}\033[K\n" if self.bar else line + "\n")
        self.stream.flush()


class _StopOnCtrlC:
    """During training, the first Ctrl-C asks to stop after the current step (the model is
    left whole); a second one interrupts at once.  Only in the main thread."""

    def __init__(self, stream):
        self.requested = False
        self.stream = stream
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.stream.write("\nCtrl-C: stopping after this step (press again to abort now)\n")
        self.stream.flush()

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# ----------------------------------------------------------------------------------------
# fit / evaluate / predict

def fit(model, x, y, *, loss, optimizer, epochs=1, batch_size=32, lengths=None,
        validation_data=None, clip_norm=None, clip_value=None, shuffle=True, callbacks=(),
        seed=None, verbose=1, metrics=(), validation_batch_size=None, stream=None):
    """Train `model` on (x, y); see ``Model.fit``."""
    x, y, lengths = _check_data(x, y, lengths)
    epochs = check_int("epochs", epochs, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    verbose = check_int("verbose", verbose, 0)
    loss_fn = _losses.get(loss)
    opt = _optim.get(optimizer, model)
    metric_objs = [_metrics.get(m) for m in metrics]
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be fastrnn Callback objects, got "
                            f"{type(cb).__name__}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be a positive number, got {clip_norm!r}")
    if clip_value is not None and not clip_value > 0:
        raise ValueError(f"clip_value must be a positive number, got {clip_value!r}")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, "
                             "lengths_val)")
    stream = stream or sys.stderr
    rng = as_generator(seed)
    stateful = _is_stateful(model)
    n = len(x)
    steps = n // batch_size if stateful else math.ceil(n / batch_size)
    if steps == 0:
        raise ValueError(f"a stateful model needs at least batch_size = {batch_size} samples, "
                         f"got {n}")
    if stateful:
        check_stream_batch_size(x, y, batch_size)
        model._stream_batch_size = batch_size       # evaluate/predict's default
    layout = _Layout(model, _sample_shape(x))
    progress = _Progress(verbose, epochs, steps, stream)
    history = History()
    model.stop_training = False
    for cb in callbacks:
        cb.set_context(model, opt)
    for cb in callbacks:
        cb.on_train_begin({})
    t_start = time.perf_counter()
    model.train()
    grads = model.grads         # live arrays, the same for the model's life: collected once
    with _StopOnCtrlC(stream) as ctrl_c:
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {})
            for m in metric_objs:
                m.reset()
            progress.begin(epoch)
            total, count, step = 0.0, 0, 0
            for xb, yb, lb in batches(x, y, batch_size, lengths,
                                      shuffle=shuffle and not stateful, seed=rng,
                                      drop_last=stateful):
                step += 1
                model.zero_grad()
                out = _forward(model, layout.x(xb), lb)
                target = layout.y(yb)
                mask = layout.mask(lb, out)
                value = loss_fn.forward(out, target, mask)
                if not np.isfinite(value):
                    history.stop_reason = (f"non-finite loss ({value}) at epoch {epoch + 1}, "
                                           f"step {step}; the model keeps the weights from "
                                           f"before this step")
                    warnings.warn(history.stop_reason, RuntimeWarning, stacklevel=3)
                    break
                model.backward(loss_fn.backward())
                if clip_value is not None:
                    _clip.clip_grad_value(grads, clip_value)
                # the global norm (which clipping needs anyway) guards the update: a step
                # with a NaN or inf gradient is never applied
                norm = _clip.clip_grad_norm(grads, clip_norm) if clip_norm is not None \
                    else _clip.grad_norm(grads)
                if not np.isfinite(norm):
                    history.stop_reason = (f"non-finite gradient (global norm {norm}) at epoch "
                                           f"{epoch + 1}, step {step}; the model keeps the "
                                           f"weights from before this step")
                    warnings.warn(history.stop_reason, RuntimeWarning, stacklevel=3)
                    model.zero_grad()
                    break
                opt.step(grads)
                history.steps += 1
                nb = len(xb)
                total += value * nb
                count += nb
                for m in metric_objs:
                    m.update(out, target, mask)
                progress.update(step, nb, total / count)
                for cb in callbacks:
                    cb.on_batch_end(step, {"loss": value})
                if ctrl_c.requested:
                    break
            if count == 0:
                break
            logs = {"loss": total / count}
            logs.update({m.name: m.result() for m in metric_objs})
            if ctrl_c.requested or history.stop_reason:
                if ctrl_c.requested:
                    history.interrupted = True
                    history.stop_reason = (f"interrupted (Ctrl-C) at epoch {epoch + 1}, step "
                                           f"{step}")
                history.append(epoch, logs)
                progress.end(logs, interrupted=step < steps)
                break
            if stateful:
                _reset_states(model)
            if validation_data is not None:
                progress.validating()
                xv, yv = validation_data[0], validation_data[1]
                lv = validation_data[2] if len(validation_data) == 3 else None
                val = evaluate(model, xv, yv, loss=loss_fn, lengths=lv,
                               batch_size=validation_batch_size or (None if stateful
                                                                    else batch_size),
                               metrics=[copy.copy(m) for m in metric_objs])
                logs.update({f"val_{k}": v for k, v in val.items()})
                model.train()
            logs["lr"] = opt.lr
            history.append(epoch, logs)
            progress.end(logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if model.stop_training:
                history.stop_reason = history.stop_reason or f"stopped by a callback after " \
                                                             f"epoch {epoch + 1}"
                break
    for cb in callbacks:
        cb.on_train_end(history.last() if history.epoch else {})
    history.wall_time = time.perf_counter() - t_start
    return history


def _pad_ragged(x, lengths):
    """Ragged x padded to one common length (evaluate/predict keep the samples' order)."""
    if isinstance(x, (list, tuple)):
        x, lx = pad_sequences(list(x))
        lengths = lx if lengths is None else np.minimum(np.asarray(lengths), lx)
    return x, lengths


def _eval_batch_size(model, x, y, batch_size, stateful):
    """evaluate/predict's batch size: 256 by default; a stateful model runs its streams in
    batches of the number of streams (found from the data, else fit's batch size)."""
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1)
        if stateful:
            check_stream_batch_size(x, y, batch_size)
        return batch_size
    if not stateful:
        return 256
    found = stream_batch_size(x, y) if y is not None else None
    if found is None:
        found = getattr(model, "_stream_batch_size", None)
    if found is None:
        raise ValueError("a stateful model needs batch_size = the number of parallel streams "
                         "the data are laid out in (the batch size it was trained with)")
    return found


def evaluate(model, x, y, *, loss=None, lengths=None, batch_size=None, metrics=()):
    """Mean loss (when `loss` is given) and metrics over (x, y), in eval mode; a dict."""
    x, y, lengths = _check_data(x, y, lengths)
    batch_size = _eval_batch_size(model, x, y, batch_size, _is_stateful(model))
    x, lengths = _pad_ragged(x, lengths)
    if isinstance(y, (list, tuple)):
        y, _ = pad_sequences(list(y))
    loss_fn = None if loss is None else _losses.get(loss)
    metric_objs = [_metrics.get(m) for m in metrics]
    for m in metric_objs:               # a Metric object passed in starts from zero counts
        m.reset()
    layout = _Layout(model, _sample_shape(x))
    stateful = _is_stateful(model)
    if stateful:
        _reset_states(model)
    model.eval()
    total, count, prev_b = 0.0, 0, None
    for xb, yb, lb in batches(x, y, batch_size, lengths, shuffle=False):
        if stateful and prev_b is not None and len(xb) != prev_b:
            _reset_states(model)
        prev_b = len(xb)
        out = _forward(model, layout.x(xb), lb)
        target, mask = layout.y(yb), layout.mask(lb, out)
        if loss_fn is not None:
            w = 1.0 if mask is None else float(np.sum(mask))
            total += loss_fn.forward(out, target, mask) * (len(xb) if mask is None else w)
            count += len(xb) if mask is None else w
        for m in metric_objs:
            m.update(out, target, mask)
    if stateful:
        _reset_states(model)
    out = {}
    if loss_fn is not None:
        out["loss"] = total / count if count else float("nan")
    out.update({m.name: m.result() for m in metric_objs})
    return out


def predict(model, x, *, lengths=None, batch_size=None):
    """Model outputs for x in eval mode, batched, sample-major (N, ...)."""
    x, _, lengths = _check_data(x, None, lengths)
    batch_size = _eval_batch_size(model, x, None, batch_size, _is_stateful(model))
    x, lengths = _pad_ragged(x, lengths)
    layout = _Layout(model, _sample_shape(x))
    stateful = _is_stateful(model)
    if stateful:
        _reset_states(model)
    model.eval()
    outs, prev_b = [], None
    for xb, _, lb in batches(x, None, batch_size, lengths, shuffle=False):
        if stateful and prev_b is not None and len(xb) != prev_b:
            _reset_states(model)
        prev_b = len(xb)
        outs.append(layout.unbatch(_forward(model, layout.x(xb), lb)))
    if stateful:
        _reset_states(model)
    return np.concatenate(outs, axis=0)
