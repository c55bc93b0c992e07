"""Optimizers with PyTorch's semantics and defaults, updating parameter arrays in place in
compiled loops (one pass per array, GIL released, no temporaries).

    opt = fastrnn.optim.Adam(model, lr=1e-3)     # a model/layer: step() reads model.grads
    ...
    model.backward(dloss)
    opt.step()

``params`` is one of
  - a model or layer: ``step()`` reads its ``grads`` (the usual form; what ``fit`` needs);
  - a list of layers, e.g. ``Adam([encoder, decoder])``: parameters named ``"<index>.<name>"``,
    ``step()`` reads each layer's ``grads``;
  - a dict name -> array (``model.parameters()``) or a list of arrays: pass the gradients to
    ``step(grads)`` as a dict with the same keys or a list in the same order.
The arrays are updated in place, so they must be writeable C-contiguous float32/float64.
Hyperparameters are plain attributes (``opt.lr = 1e-4``; the LR schedules set ``opt.lr``).
``state_dict()`` / ``load_state_dict()`` save and restore the step count and buffers.
"""
import numbers

import numpy as np

from fastrnn.engine import optim as _optim
from fastrnn.functional import _c_array
from fastrnn.layers._base import Layer, check_bool

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "NAMES", "get"]


def check_inplace(label, a):
    """`a` must be a writeable C-contiguous float32/float64 ndarray (updated in place)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{label} must be a float32 or float64 ndarray, got "
                        f"{type(a).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{label} must be a float32 or float64 ndarray, got dtype {a.dtype}")
    if not a.flags.c_contiguous or not a.flags.writeable or not a.flags.aligned:
        raise ValueError(f"{label} must be a writeable, aligned, C-contiguous array (updated "
                         f"in place)")
    return a


def _number(name, value, low=0.0, high=None, low_open=False, high_open=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if value < low or (low_open and value == low) or (high is not None and (
            value > high or (high_open and value == high))):
        lo = "(" if low_open else "["
        hi = "inf)" if high is None else (f"{high})" if high_open else f"{high}]")
        raise ValueError(f"{name} must be in {lo}{low}, {hi}, got {value!r}")
    return value


class Optimizer:
    """Base class: holds the parameters, their per-array state and the hyperparameters.

    ``params``: a model or layer (``step()`` then reads its ``grads``), a list of layers
    (``Adam([encoder, decoder])``: names ``"<index>.<name>"``), a dict name -> array or a
    list of arrays (then ``step(grads)`` takes the gradients in the same form).  Arrays are
    updated in place: writeable C-contiguous float32/float64 ndarrays."""

    _hyper = ()           # names of the hyperparameters (attributes), for state_dict/repr

    def __init__(self, params):
        self._model = params if isinstance(params, Layer) else None
        self._layers = [params] if self._model is not None else []
        if self._model is not None:
            params = params.parameters()
        elif isinstance(params, (list, tuple)) and params and \
                all(isinstance(p, Layer) for p in params):
            self._layers = list(params)          # several layers: names "<index>.<name>"
            params = {f"{i}.{k}": v for i, layer in enumerate(params)
                      for k, v in layer.parameters().items()}
        if isinstance(params, dict):
            names, arrays = list(params), list(params.values())
        elif isinstance(params, (list, tuple)):
            names, arrays = [str(i) for i in range(len(params))], list(params)
            for i, a in enumerate(arrays):
                if isinstance(a, Layer):
                    raise TypeError(f"params[{i}] is a {type(a).__name__} layer in a list "
                                    f"that also holds arrays: give a list of layers or a "
                                    f"list of arrays, not both")
        else:
            raise TypeError(f"params must be a model/layer, a list of layers, a dict name -> "
                            f"array or a list of arrays, got {type(params).__name__}")
        if not arrays:
            raise ValueError("params is empty: nothing to optimize")
        for name, a in zip(names, arrays):
            label = f"params[{name}]" if isinstance(params, (list, tuple)) else \
                f"parameter {name!r}"
            check_inplace(label, a)
        self.names = names
        self.params = arrays
        self.state = [dict() for _ in arrays]
        self.steps = 0

    def _grads(self, grads):
        if grads is None:
            if not self._layers:
                raise TypeError("step() needs the gradients (a dict with the parameters' keys "
                                "or a list in their order) when the optimizer was not built "
                                "from a model or layers")
            if self._model is not None:
                grads = self._model.grads
            else:
                grads = {f"{i}.{k}": v for i, layer in enumerate(self._layers)
                         for k, v in layer.grads.items()}
        if isinstance(grads, dict):
            missing = [n for n in self.names if n not in grads]
            if missing:
                raise KeyError(f"grads has no entry for parameters {missing}")
            grads = [grads[n] for n in self.names]
        elif not isinstance(grads, (list, tuple)) or len(grads) != len(self.params):
            raise ValueError(f"grads must be a dict or a list of {len(self.params)} arrays")
        out = []
        for name, p, g in zip(self.names, self.params, grads):
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"gradient of {name!r} must have shape {p.shape}, got "
                                 f"{g.shape}")
            out.append(_c_array(g, p.dtype))
        return out

    def step(self, grads=None):
        """Apply one update to every parameter (in place)."""
        grads = self._grads(grads)
        self.steps += 1
        for p, g, st in zip(self.params, grads, self.state):
            self._update(p.reshape(-1), g.reshape(-1), st)
        for layer in self._layers:
            layer._weights_changed()

    def _buffer(self, st, key, p):
        buf = st.get(key)
        if buf is None:
            buf = st[key] = np.zeros(p.size, p.dtype)
        return buf

    def state_dict(self):
        """The step count, hyperparameters and per-parameter buffers (copies), for
        ``load_state_dict``."""
        return {"type": type(self).__name__, "steps": self.steps,
                "hyper": {k: getattr(self, k) for k in self._hyper},
                "state": {n: {k: (v.copy() if isinstance(v, np.ndarray) else v)
                              for k, v in st.items()}
                          for n, st in zip(self.names, self.state)}}

    def load_state_dict(self, sd):
        """Restore what ``state_dict`` saved (buffers checked against the parameters'
        sizes)."""
        if not isinstance(sd, dict) or sd.get("type") != type(self).__name__:
            raise ValueError(f"state_dict is not a {type(self).__name__} state dict")
        state = sd.get("state", {})
        new = []
        for n, p in zip(self.names, self.params):
            entry = state.get(n, {})
            bufs = {}
            for k, v in entry.items():
                v = np.asarray(v)
                if k == "step":
                    bufs[k] = int(v)
                    continue
                if v.size != p.size:
                    raise ValueError(f"state_dict buffer {k!r} of {n!r} has {v.size} elements, "
                                     f"the parameter {p.size}")
                bufs[k] = np.array(v, dtype=p.dtype).reshape(-1)
            new.append(bufs)
        for k, v in sd.get("hyper", {}).items():
            if k in self._hyper:
                setattr(self, k, v)
        self.state = new
        self.steps = int(sd.get("steps", 0))

    def __repr__(self):
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay,
    as ``torch.optim.SGD`` (the first momentum step copies the gradient into the buffer)."""

    _hyper = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params)
        self.lr = _number("lr", lr)
        self.momentum = _number("momentum", momentum)
        self.dampening = _number("dampening", dampening)
        self.weight_decay = _number("weight_decay", weight_decay)
        nesterov = check_bool("nesterov", nesterov)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        self.nesterov = nesterov

    def _update(self, p, g, st):
        first = "momentum_buffer" not in st
        buf = self._buffer(st, "momentum_buffer", p) if self.momentum else p[:0]
        _optim.sgd(p, g, buf, self.lr, self.momentum, self.dampening, self.weight_decay,
                   self.nesterov, first)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam``: weight_decay adds ``wd * p`` to the
    gradient; ``amsgrad`` keeps the running maximum of the second moment."""

    _hyper = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params)
        self.lr = _number("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_number("betas[0]", betas[0], 0.0, 1.0),
                      _number("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _number("eps", eps)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.amsgrad = check_bool("amsgrad", amsgrad)

    def _update(self, p, g, st):
        st["step"] = st.get("step", 0) + 1
        m = self._buffer(st, "exp_avg", p)
        v = self._buffer(st, "exp_avg_sq", p)
        vmax = self._buffer(st, "max_exp_avg_sq", p) if self.amsgrad else p[:0]
        _optim.adam(p, g, m, v, vmax, self.lr, self.betas[0], self.betas[1], self.eps,
                    self.weight_decay, self._decoupled, self.amsgrad, st["step"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019) as ``torch.optim.AdamW``:
    ``p *= 1 - lr * weight_decay`` before the Adam step; default weight_decay 0.01."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop`` (alpha = smoothing constant; ``centered`` divides by
    the estimated variance; optional momentum)."""

    _hyper = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params)
        self.lr = _number("lr", lr)
        self.alpha = _number("alpha", alpha, 0.0, 1.0, high_open=False)
        self.eps = _number("eps", eps)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.momentum = _number("momentum", momentum)
        self.centered = check_bool("centered", centered)

    def _update(self, p, g, st):
        sq = self._buffer(st, "square_avg", p)
        gavg = self._buffer(st, "grad_avg", p) if self.centered else p[:0]
        buf = self._buffer(st, "momentum_buffer", p) if self.momentum > 0 else p[:0]
        _optim.rmsprop(p, g, sq, gavg, buf, self.lr, self.alpha, self.eps, self.weight_decay,
                       self.momentum, self.centered)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011) as ``torch.optim.Adagrad``."""

    _hyper = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params)
        self.lr = _number("lr", lr)
        self.lr_decay = _number("lr_decay", lr_decay)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.initial_accumulator_value = _number("initial_accumulator_value",
                                                 initial_accumulator_value)
        self.eps = _number("eps", eps)

    def _update(self, p, g, st):
        st["step"] = st.get("step", 0) + 1
        if "sum" not in st:
            st["sum"] = np.full(p.size, self.initial_accumulator_value, p.dtype)
        clr = self.lr / (1 + (st["step"] - 1) * self.lr_decay)
        _optim.adagrad(p, g, st["sum"], clr, self.eps, self.weight_decay)


NAMES = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(optimizer, model, **kwargs):
    """An optimizer for `model`: an Optimizer (checked to belong to `model`) or a name in
    NAMES, built with `kwargs` (PyTorch's defaults otherwise)."""
    if isinstance(optimizer, Optimizer):
        if optimizer._model is not None and optimizer._model is not model:
            raise ValueError("optimizer was built for a different model")
        if optimizer._model is None and optimizer.names != list(model.parameters()):
            raise ValueError("optimizer must be built from the model (e.g. Adam(model)) or "
                             "from model.parameters() to be driven by the model's gradients")
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in NAMES:
        return NAMES[optimizer.lower()](model, **kwargs)
    raise ValueError(f"optimizer must be a fastrnn.optim.Optimizer or one of {sorted(NAMES)}, "
                     f"got {optimizer!r}")
