"""Metrics accumulated over batches: accuracy, MSE, MAE, perplexity.

Each metric has ``update(pred, target, weights=None)`` (weights: per-position mask of the
positions' shape, e.g. valid steps), ``result()`` and ``reset()``."""
import numpy as np

from fastrnn.losses import log_softmax

__all__ = ["Metric", "Accuracy", "MSE", "MAE", "Perplexity", "get"]


class Metric:
    """Base of the metrics: ``update(pred, target, weights=None)`` per batch, then
    ``result()``; ``reset()`` starts over."""

    name = None

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget the accumulated counts (``evaluate`` and each fit epoch start here)."""
        self.total = 0.0
        self.count = 0.0

    def result(self):
        """The metric over everything seen since ``reset`` (NaN when nothing was seen)."""
        return self.total / self.count if self.count else float("nan")

    def _add(self, values, weights):
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            w = w.reshape(w.shape + (1,) * (values.ndim - w.ndim))
            w = np.broadcast_to(w, values.shape)
            self.total += float((values * w).sum())
            self.count += float(w.sum())
        else:
            self.total += float(values.sum())
            self.count += values.size


class Accuracy(Metric):
    """Share of correct predictions.  Class scores (..., C) with integer targets (...) or
    one-hot/probability targets (..., C) compare the argmax; single scores (same shape as the
    0/1 targets) are thresholded at ``threshold`` (0 for logits, the default)."""

    name = "accuracy"

    def __init__(self, threshold=0.0):
        self.threshold = threshold
        super().__init__()

    def update(self, pred, target, weights=None):
        """Count the correct predictions of one batch (``weights``: per-position mask)."""
        pred, target = np.asarray(pred), np.asarray(target)
        if target.dtype.kind in "iu" and target.shape == pred.shape[:-1]:
            correct = pred.argmax(axis=-1) == target
        elif target.shape == pred.shape and pred.shape[-1:] != (1,) and pred.ndim > 1 \
                and target.dtype.kind == "f" and np.allclose(target.sum(axis=-1), 1):
            correct = pred.argmax(axis=-1) == target.argmax(axis=-1)
        elif target.shape == pred.shape:
            correct = (pred > self.threshold) == (target > 0.5)
        else:
            raise ValueError(f"accuracy: cannot compare predictions {pred.shape} with targets "
                             f"{target.dtype} {target.shape}")
        self._add(correct.astype(np.float64), weights)


class MSE(Metric):
    """Mean squared error over every element (and weighted position)."""

    name = "mse"

    def update(self, pred, target, weights=None):
        """Add one batch's squared errors (``weights``: per-position mask)."""
        d = np.asarray(pred, np.float64) - np.asarray(target, np.float64).reshape(np.shape(pred))
        self._add(d * d, weights)


class MAE(Metric):
    """Mean absolute error over every element (and weighted position)."""

    name = "mae"

    def update(self, pred, target, weights=None):
        """Add one batch's absolute errors (``weights``: per-position mask)."""
        d = np.asarray(pred, np.float64) - np.asarray(target, np.float64).reshape(np.shape(pred))
        self._add(np.abs(d), weights)


class Perplexity(Metric):
    """exp(mean cross-entropy per predicted position) for class scores (..., C) and integer
    targets (...)."""

    name = "perplexity"

    def update(self, pred, target, weights=None):
        """Add one batch's negative log-likelihoods of the targets (``weights``: per-
        position mask)."""
        z = np.asarray(pred, np.float64)
        t = np.asarray(target)
        if t.dtype.kind not in "iu" or t.shape != z.shape[:-1]:
            raise ValueError(f"perplexity needs class scores (..., C) and integer targets "
                             f"(...), got {z.shape} and {t.dtype} {t.shape}")
        nll = -np.take_along_axis(log_softmax(z), t[..., None], axis=-1)[..., 0]
        self._add(nll, weights)

    def result(self):
        """exp of the mean negative log-likelihood since ``reset``."""
        return float(np.exp(super().result())) if self.count else float("nan")


_NAMES = {"accuracy": Accuracy, "acc": Accuracy, "mse": MSE, "mae": MAE,
          "perplexity": Perplexity}


def get(metric):
    """A Metric: `metric` itself if it is one, else a new one by name (accuracy/acc, mse,
    mae, perplexity)."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str) and metric in _NAMES:
        return _NAMES[metric]()
    raise ValueError(f"metric must be a fastrnn.metrics.Metric or one of {sorted(_NAMES)}, "
                     f"got {metric!r}")
