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

    @classmethod
    def from_csv(cls, path):
        """The History a ``CSVLogger`` file records (its epochs and logged values; empty
        cells are NaN), e.g. to plot it after the fact."""
        import csv
        with open(path, newline="") as f:
            sample = f.read(4096)
            f.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            rows = list(csv.reader(f, dialect))
        if not rows or not rows[0] or rows[0][0] != "epoch":
            raise ValueError(f"{path}: not a CSVLogger file (its first column must be "
                             f"'epoch')")
        names, history = rows[0][1:], cls()
        for i, row in enumerate(rows[1:], start=2):
            if not row:
                continue
            try:
                values = [float(v) if v != "" else float("nan") for v in row[1:]]
                epoch = int(row[0])
            except ValueError:
                raise ValueError(f"{path}, line {i}: a value is not a number: {row}") from None
            history.append(epoch, dict(zip(names, values)))
        if not history.epoch:
            raise ValueError(f"{path}: the log has no epochs")
        return history

    def plot(self, path=None, metrics=None, **kwargs):
        """Loss and each metric per epoch, training and validation on the same axes, the
        best epoch and the stop reason marked; returns the matplotlib figure and saves a PNG
        when `path` is given (``fastrnn.plot.training_curves``; needs the ``plot`` extra)."""
        from fastrnn import plot
        return plot.training_curves(self, path, metrics, **kwargs)

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

def _take_rows(ctx, xb, yb, lb):
    """This rank's contiguous rows of a global batch (rank r of n: rows len*r//n ..)."""
    n = len(xb)
    lo, hi = n * ctx.rank // ctx.size, n * (ctx.rank + 1) // ctx.size
    return xb[lo:hi], None if yb is None else yb[lo:hi], None if lb is None else lb[lo:hi]


class _Shard:
    """Data-parallel training (fastrnn.distributed): this rank's slice of every global batch
    and the step's one allreduce.  Without a context (one process) it passes through."""

    def __init__(self, ctx, loss_fn, grads):
        self.ctx = ctx
        self.loss_fn = loss_fn
        self.reducer = None
        if ctx is not None:
            from fastrnn.distributed import GradientReducer
            self.reducer = GradientReducer(ctx, list(grads.values()), 4)

    def take(self, xb, yb, lb):
        return (xb, yb, lb) if self.ctx is None else _take_rows(self.ctx, xb, yb, lb)

    def reduce(self, value, finite, nb, stop):
        """The global step: (loss, samples, any loss non-finite, any Ctrl-C).  Gradients
        become the weighted mean over the ranks (the plain sum for reduction="sum"), so the
        step equals one process's on the global batch."""
        if self.ctx is None:
            return value, nb, not finite, stop
        mean = self.loss_fn.reduction == "mean"
        w = (self.loss_fn.total_weight if mean else 1.0) if (nb and finite) else 0.0
        total_w, lw, n, bad, halt = self.reducer.reduce(
            w, [value * w if finite else 0.0, nb, 0.0 if finite else 1.0, float(stop)],
            average=mean)
        if mean:
            lw = lw / total_w if total_w > 0 else 0.0
        return float(lw), int(round(n)), bad > 0, halt > 0

    def sum_metrics(self, metric_objs):
        """Each metric's counts summed over the ranks."""
        if self.ctx is None or not metric_objs:
            return
        sums = self.ctx.sum([v for m in metric_objs for v in (m.total, m.count)])
        for i, m in enumerate(metric_objs):
            m.total, m.count = float(sums[2 * i]), float(sums[2 * i + 1])

    def any(self, flag):
        return bool(flag) if self.ctx is None else self.ctx.sum([float(bool(flag))])[0] > 0


def _distributed_setup(ctx, model, opt, seed):
    """The shuffle seed every rank shares; rank 0's parameters, optimizer state and seed go
    to every rank (ctx: a fastrnn.distributed.Context, or None for one process)."""
    if ctx is None:
        return seed
    from fastrnn import distributed as _dist
    if ctx.rank == 0:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            seed = int(as_generator(seed).integers(2**63))   # a generator or None: draw one
        seed = int(seed)
    seed = ctx.bcast_object(seed if ctx.rank == 0 else None, 0)
    _dist.broadcast_parameters(model, 0, ctx)
    _dist.broadcast_optimizer_state(opt, 0, ctx)
    _dist.decorrelate_masks(model, ctx)
    return seed


def fit(model, x, y, *, loss, optimizer, epochs=1, batch_size=32, lengths=None,
        validation_data=None, clip_norm=None, clip_value=None, shuffle=True, callbacks=(),
        seed=None, verbose=1, metrics=(), validation_batch_size=None, stream=None,
        distributed=None):
    """Train `model` on (x, y); see ``Model.fit``."""
    args = (model, x, y, loss, optimizer, epochs, batch_size, lengths, validation_data,
            clip_norm, clip_value, shuffle, callbacks, seed, verbose, metrics,
            validation_batch_size, stream)
    if distributed is None or distributed is False:
        return _fit(*args, None)
    from fastrnn import distributed as _dist
    from fastrnn.engine.threads import _fixed_threads, get_num_threads, using
    ctx = _dist.as_context(distributed)
    share = ctx.threads_per_rank() if _fixed_threads is None else get_num_threads()
    with using(share), _dist.limit_blas_threads(share):
        return _fit(*args, ctx)


def _fit(model, x, y, loss, optimizer, epochs, batch_size, lengths, validation_data,
         clip_norm, clip_value, shuffle, callbacks, seed, verbose, metrics,
         validation_batch_size, stream, ctx):
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
    stateful = _is_stateful(model)
    seed = _distributed_setup(ctx, model, opt, seed)
    if ctx is not None and ctx.rank != 0:
        verbose = 0
        stream = io.StringIO()          # rank 0 alone speaks (progress, Ctrl-C)
        callbacks = [cb for cb in callbacks if not getattr(cb, "rank0_only", False)]
    rng = as_generator(seed)
    size = 1 if ctx is None else ctx.size
    global_batch = batch_size * size
    n = len(x)
    steps = n // global_batch if stateful else math.ceil(n / global_batch)
    if steps == 0:
        raise ValueError(f"a stateful model needs at least batch_size = {global_batch} "
                         f"samples{' (over all ranks)' if size > 1 else ''}, got {n}")
    if stateful:
        check_stream_batch_size(x, y, global_batch)
        model._stream_batch_size = global_batch     # evaluate/predict's default: all streams
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
    shard = _Shard(ctx, loss_fn, grads)
    with _StopOnCtrlC(stream) as ctrl_c:
        for epoch in range(epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {})
            for m in metric_objs:
                m.reset()
            progress.begin(epoch)
            total, count, step = 0.0, 0, 0
            for xb, yb, lb in batches(x, y, global_batch, lengths,
                                      shuffle=shuffle and not stateful, seed=rng,
                                      drop_last=stateful):
                step += 1
                model.zero_grad()
                xb, yb, lb = shard.take(xb, yb, lb)
                nb = len(xb)
                value, finite, out = 0.0, True, None
                if nb:
                    out = _forward(model, layout.x(xb), lb)
                    target = layout.y(yb)
                    mask = layout.mask(lb, out)
                    value = loss_fn.forward(out, target, mask)
                    finite = bool(np.isfinite(value))
                    if finite:
                        model.backward(loss_fn.backward())
                local_value = value
                value, nb_all, bad, stop = shard.reduce(value, finite, nb, ctrl_c.requested)
                if stop:
                    ctrl_c.requested = True
                if bad:
                    shown = local_value if not finite else value
                    history.stop_reason = (f"non-finite loss ({shown}) at epoch {epoch + 1}, "
                                           f"step {step}; the model keeps the weights from "
                                           f"before this step")
                    warnings.warn(history.stop_reason, RuntimeWarning, stacklevel=3)
                    model.zero_grad()
                    break
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
                total += value * nb_all
                count += nb_all
                if nb:
                    for m in metric_objs:
                        m.update(out, target, mask)
                progress.update(step, nb_all, total / count)
                for cb in callbacks:
                    cb.on_batch_end(step, {"loss": value})
                if ctrl_c.requested:
                    break
            if count == 0:
                break
            shard.sum_metrics(metric_objs)
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
                                                                    else global_batch),
                               metrics=[copy.copy(m) for m in metric_objs], _ctx=ctx)
                logs.update({f"val_{k}": v for k, v in val.items()})
                model.train()
            logs["lr"] = opt.lr
            history.append(epoch, logs)
            progress.end(logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if ctx is not None:
                # a callback's stop on any rank stops every rank (none is left waiting)
                model.stop_training = shard.any(model.stop_training)
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


def evaluate(model, x, y, *, loss=None, lengths=None, batch_size=None, metrics=(),
             _ctx=None):
    """Mean loss (when `loss` is given) and metrics over (x, y), in eval mode; a dict.
    (_ctx: fit's distributed context: each rank its slice of every batch, then the sums
    over the ranks.)"""
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
        if _ctx is not None:
            xb, yb, lb = _take_rows(_ctx, xb, yb, lb)
            if not len(xb):
                continue
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
    if _ctx is not None:
        sums = _ctx.sum([total, count] + [v for m in metric_objs for v in (m.total, m.count)])
        total, count = float(sums[0]), float(sums[1])
        for i, m in enumerate(metric_objs):
            m.total, m.count = float(sums[2 + 2 * i]), float(sums[3 + 2 * i])
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
