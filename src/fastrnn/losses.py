"""Losses with fused, numerically stable forward and backward.

``loss = L.forward(pred, target, mask=None)`` returns the loss (a Python float, or an array
with ``reduction="none"``); ``L.backward()`` then returns d loss / d pred (times ``grad``).

``mask`` (optional) weights positions, e.g. the valid steps of padded sequences
(``fastrnn.layers.sequence_mask(lengths, T)``): it has the leading shape of the positions
(for CrossEntropy the logits' shape without the class axis; for MSE and BCE any leading part
of pred's shape) and is broadcast over the rest.  ``reduction="mean"`` divides by the total
weight of the counted elements (PyTorch's convention with ``ignore_index``); when nothing is
counted, the loss and its gradient are 0.
"""
import numpy as np

from fastrnn.engine import loss as _loss
from fastrnn.engine.threads import engine_threads
from fastrnn.functional import _as_array, _c_array

__all__ = ["Loss", "CrossEntropy", "MSE", "BCEWithLogits", "get", "log_softmax"]

_REDUCTIONS = ("mean", "sum", "none")


def _float(name, value):
    arr = value if isinstance(value, np.ndarray) else _as_array(name, value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    elif arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)
    return arr


def _weights(mask, shape, dtype):
    """Mask as float weights of `shape`'s leading dims (None when absent)."""
    if mask is None:
        return None
    m = _as_array("mask", mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"mask must be boolean or numbers, got dtype {m.dtype}")
    if m.shape != tuple(shape[:m.ndim]):
        raise ValueError(f"mask must have the leading shape of the positions, "
                         f"{tuple(shape)} (or a leading part of it), got {m.shape}")
    return m.astype(dtype)


def log_softmax(z):
    """log softmax over the last axis, stable for any logits."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Loss:
    """Base: ``forward(pred, target, mask=None)``, then ``backward(grad=1.0)``."""

    name = None

    def __init__(self, reduction="mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None
        self.total_weight = 0.0     # the last forward's denominator (reduction="mean")

    def __call__(self, pred, target, mask=None):
        return self.forward(pred, target, mask)

    def _reduce(self, per, dper, w):
        """Apply the reduction to per-element losses `per` (gradient `dper`, which may have
        extra trailing axes) with weights `w` over their leading dims; keep the gradient for
        backward."""
        if w is not None:
            per = per * w.reshape(w.shape + (1,) * (per.ndim - w.ndim))
            dper = dper * w.reshape(w.shape + (1,) * (dper.ndim - w.ndim))
            total = float(w.sum()) * (per.size / w.size) if w.size else 0.0
        else:
            total = float(per.size)
        self.total_weight = total
        if self.reduction == "none":
            self._cache = dper
            return per
        value = float(per.sum())
        if self.reduction == "mean":
            if total == 0:
                self._cache = np.zeros_like(dper)
                return 0.0
            value /= total
            dper = dper / total
        self._cache = dper
        return value

    def backward(self, grad=1.0):
        """d loss / d pred; ``grad`` is the upstream gradient (a number, or with
        reduction="none" an array of the loss's shape)."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward call first")
        d = self._cache
        self._cache = None
        if self.reduction == "none":
            g = _float("grad", grad)
            return (d * g.reshape(g.shape + (1,) * (d.ndim - g.ndim))).astype(d.dtype)
        if isinstance(grad, (int, float)) and grad == 1:
            return d                            # the cache is consumed: no copy needed
        return (d * float(grad)).astype(d.dtype, copy=False)

    def get_config(self):
        """Constructor arguments (for saving and repr)."""
        return {"reduction": self.reduction}


class CrossEntropy(Loss):
    """Softmax cross-entropy over the class axis (the last) of logits (..., C).

    target: integer class ids (...) — entries equal to ``ignore_index`` are not counted — or
    class probabilities / one-hot rows (..., C).  ``label_smoothing`` as PyTorch's."""

    name = "cross_entropy"

    def __init__(self, reduction="mean", ignore_index=-100, label_smoothing=0.0):
        super().__init__(reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits, target, mask=None):
        """Mean (or summed / per-position) softmax cross-entropy of `logits` (..., C)
        against integer ids (...) or probabilities (..., C); `mask` weights positions.
        Keeps the gradient for ``backward``."""
        z = _float("logits", logits)
        if z.ndim < 1 or z.shape[-1] < 1:
            raise ValueError(f"logits must have a class axis (last) of size >= 1, got shape "
                             f"{z.shape}")
        C = z.shape[-1]
        t = _as_array("target", target)
        if t.shape == z.shape[:-1] and t.dtype.kind in "iu":
            return self._fused(z, t, mask)
        log_p = log_softmax(z)
        if t.shape == z.shape and t.dtype.kind == "f":
            probs = t.astype(z.dtype)
            counted = None
        elif t.shape == z.shape[:-1] and t.dtype.kind in "iu":
            counted = t != self.ignore_index
            if np.any(counted & ((t < 0) | (t >= C))):
                bad = t[counted & ((t < 0) | (t >= C))]
                raise ValueError(f"target class ids must be in [0, {C}) (or ignore_index "
                                 f"{self.ignore_index}), got {bad.flat[0]}")
            probs = np.zeros_like(z)
            idx = np.where(counted, t, 0)
            np.put_along_axis(probs, idx[..., None], 1.0, axis=-1)
            probs *= counted[..., None]
        else:
            raise ValueError(f"target must be integer class ids of shape {z.shape[:-1]} or "
                             f"probabilities of shape {z.shape}, got {t.dtype} {t.shape}")
        if self.label_smoothing:
            eps = self.label_smoothing
            probs = probs * (1 - eps) + eps / C * (probs.sum(axis=-1, keepdims=True))
        per = -(probs * log_p).sum(axis=-1)                    # (...)
        # d/dz of -sum(p log_softmax(z)) = softmax(z) * sum(p) - p
        dper = np.exp(log_p) * probs.sum(axis=-1, keepdims=True) - probs
        w = _weights(mask, z.shape[:-1], z.dtype)
        if counted is not None:
            cw = counted.astype(z.dtype)
            w = cw if w is None else w * cw
        return self._reduce(per, dper, w)

    def _fused(self, z, t, mask):
        """Integer targets: loss and gradient in one compiled pass over each row of logits
        (fastrnn.engine.loss, threaded over rows, GIL released); rows that are not counted
        (ignore_index, mask 0) are never read, so NaN there reaches no result."""
        C = z.shape[-1]
        lead = z.shape[:-1]
        flat_t = t.reshape(-1)
        counted = flat_t != self.ignore_index
        bad = counted & ((flat_t < 0) | (flat_t >= C))
        if bad.any():
            raise ValueError(f"target class ids must be in [0, {C}) (or ignore_index "
                             f"{self.ignore_index}), got {flat_t[bad][0]}")
        w = counted.astype(z.dtype)
        m = _weights(mask, lead, z.dtype)
        if m is not None:
            w *= np.broadcast_to(m.reshape(m.shape + (1,) * (len(lead) - m.ndim)),
                                 lead).reshape(-1)
        total = float(w.sum())
        self.total_weight = total
        scale = 1.0
        if self.reduction == "mean":
            scale = 1.0 / total if total else 0.0
        zf = _c_array(z.reshape(-1, C), z.dtype)
        targets = np.where(counted, flat_t, 0).astype(np.int64)
        with engine_threads(blas=False) as nthreads:
            per, d = _loss.softmax_cross_entropy(zf, targets, w, self.label_smoothing, scale,
                                                 nthreads)
        self._cache = d.reshape(z.shape)
        if self.reduction == "none":
            return per.reshape(lead)
        value = float(per.sum(dtype=np.float64))
        return value * scale if self.reduction == "mean" else value

    def get_config(self):
        """Constructor arguments (for saving and repr)."""
        return {"reduction": self.reduction, "ignore_index": self.ignore_index,
                "label_smoothing": self.label_smoothing}


def _pair(pred, target):
    p = _float("pred", pred)
    t = _float("target", target)
    if t.shape != p.shape:
        raise ValueError(f"target must have the shape of pred, {p.shape}, got {t.shape}")
    return p, t.astype(p.dtype, copy=False)


class MSE(Loss):
    """Mean squared error, ``(pred - target)^2`` (mean over elements with reduction="mean")."""

    name = "mse"

    def forward(self, pred, target, mask=None):
        """Mean (or summed / per-element) squared error between `pred` and `target` (same
        shape); `mask` weights positions.  Keeps the gradient for ``backward``."""
        p, t = _pair(pred, target)
        diff = p - t
        return self._reduce(diff * diff, 2 * diff, _weights(mask, p.shape, p.dtype))


class BCEWithLogits(Loss):
    """Binary cross-entropy on logits (sigmoid fused in, stable for any logit):
    ``max(z, 0) - z*t + log(1 + exp(-|z|))``; targets in [0, 1]."""

    name = "bce_with_logits"

    def forward(self, pred, target, mask=None):
        """Binary cross-entropy of the sigmoid of `pred` (logits) against 0/1 (or
        probability) `target` of the same shape, computed stably from the logits; `mask`
        weights positions."""
        z, t = _pair(pred, target)
        e = np.exp(-np.abs(z))
        per = np.maximum(z, 0) - z * t + np.log1p(e)
        sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        return self._reduce(per, sig - t, _weights(mask, z.shape, z.dtype))


_NAMES = {"cross_entropy": CrossEntropy, "mse": MSE, "bce_with_logits": BCEWithLogits,
          "binary_cross_entropy_with_logits": BCEWithLogits}


def get(loss):
    """A Loss from a name ("cross_entropy", "mse", "bce_with_logits") or a Loss instance."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in _NAMES:
        return _NAMES[loss]()
    raise ValueError(f"loss must be a fastrnn.losses.Loss or one of {sorted(_NAMES)}, got "
                     f"{loss!r}")
