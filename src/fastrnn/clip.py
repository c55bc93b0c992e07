"""Gradient clipping, in place, in compiled loops (GIL released).

``grads`` is a dict name -> array (``model.grads``), a list of arrays, or a model/layer (its
``grads``)."""
import numbers

import numpy as np

from fastrnn.engine import optim as _optim
from fastrnn.layers._base import Layer
from fastrnn.optim import check_inplace

__all__ = ["grad_norm", "clip_grad_norm", "clip_grad_value"]


def _arrays(grads):
    if isinstance(grads, Layer):
        grads = grads.grads
    if isinstance(grads, dict):
        items = list(grads.items())
    elif isinstance(grads, (list, tuple)):
        items = [(str(i), g) for i, g in enumerate(grads)]
    elif isinstance(grads, np.ndarray):
        items = [("0", grads)]
    else:
        raise TypeError(f"grads must be a model, a dict of arrays or a list of arrays, got "
                        f"{type(grads).__name__}")
    return [check_inplace(f"grads[{name!r}]", g).reshape(-1) for name, g in items]


def _positive(name, value, allow_inf=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or np.isnan(value) \
            or value <= 0 or (np.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def grad_norm(grads, norm_type=2.0):
    """The global norm of order `norm_type` of all gradients together (as
    ``torch.nn.utils.get_total_norm``): NaN if any element is NaN, inf if any is inf."""
    return _total_norm(_arrays(grads), _positive("norm_type", norm_type, allow_inf=True))


def _total_norm(arrays, norm_type):
    if np.isinf(norm_type):
        total = max((_optim.max_abs(g) for g in arrays), default=0.0)
        if any(np.isnan(_optim.max_abs(g)) for g in arrays):
            total = float("nan")
        return total
    if norm_type == 2.0:
        return float(np.sqrt(sum(_optim.sum_squares(g) for g in arrays)))
    return float(sum(_optim.sum_abs_pow(g, norm_type) for g in arrays) ** (1 / norm_type))


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so their global norm is at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_``: factor ``min(1, max_norm / (norm + 1e-6))``).

    Returns the total norm before clipping.  A non-finite norm raises RuntimeError with
    ``error_if_nonfinite=True``; otherwise, as in PyTorch, the gradients are scaled by the
    resulting factor (NaN stays NaN)."""
    arrays = _arrays(grads)
    max_norm = _positive("max_norm", max_norm)
    norm_type = _positive("norm_type", norm_type, allow_inf=True)
    total = _total_norm(arrays, norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is "
                           f"non-finite ({total}), so it cannot be clipped")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:                    # also NaN: scaled like PyTorch
        for g in arrays:
            _optim.scale(g, coef)
    return total


def clip_grad_value(grads, clip_value):
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    arrays = _arrays(grads)
    c = _positive("clip_value", clip_value)
    for g in arrays:
        _optim.clamp(g, -c, c)
