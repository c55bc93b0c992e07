"""The Layer base class: parameters, gradients, modes, state dicts, configs.

There is no autograd tape.  A layer's ``forward`` keeps (in training mode) what its
``backward`` needs; ``backward(dy)`` returns the gradient with respect to the layer's input
and ADDS the parameter gradients into ``layer.grads`` (zeroed by ``zero_grad()``), as PyTorch
accumulates into ``.grad``.

Parameter arrays are created once and only ever updated in place (optimizers,
``load_state_dict``), so references taken from ``parameters()`` and ``grads`` stay valid for
the life of the layer.
"""
import contextlib
import contextvars

import numpy as np

from fastrnn.functional import _as_array, _c_array
from fastrnn.functional import _check_flag as check_bool  # noqa: F401 (one bool check)

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_prob(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def float_input(name, value, dtype, ndim=None, last=None, what=None):
    """`value` as a float ndarray of `dtype`; checks rank (an int or tuple of ints) and size of
    the last axis."""
    arr = value if isinstance(value, np.ndarray) else _as_array(name, value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{name} must be {what or f'{ndim}-D'}, got shape {arr.shape}")
    if last is not None and (arr.ndim == 0 or arr.shape[-1] != last):
        raise ValueError(f"{name} must have last dimension {last} ({what}), got shape "
                         f"{arr.shape}")
    return np.asarray(arr, dtype=dtype)


def refuse_sequence_list(x, batch_first, input_name="I"):
    """Layers and models take one array in their layout; a Python list of sequences is
    ambiguous (samples or time steps?), so it is refused with directions."""
    if not isinstance(x, (list, tuple)):
        return
    layout = f"(B, T, {input_name})" if batch_first else f"(T, B, {input_name})"
    lens = [np.shape(s)[0] if np.ndim(s) else None for s in x]
    if None not in lens and len(set(lens)) > 1:
        raise ValueError(
            f"x is a list of {len(x)} sequences of different lengths ({min(lens)} to "
            f"{max(lens)} steps); forward takes one padded array in the layer's layout "
            f"{layout}: fastrnn.data.pad_sequences(x) gives a (B, T, ...) array and lengths "
            f"(pass lengths=...){'' if batch_first else ', transposed with .swapaxes(0, 1)'}; "
            f"or use fit / evaluate / predict, which take lists of sequences")
    how = "np.stack(x)" if batch_first else "np.stack(x, axis=1)"
    raise ValueError(
        f"x is a Python {type(x).__name__} of {len(x)} items; forward takes one array in the "
        f"layer's layout {layout}: {how} makes that from a list of (T, ...) sequences; "
        f"fit / evaluate / predict take lists of sequences (one per sample) as they are")


class ParameterBudgetExceeded(ValueError):
    """Raised while ``fastrnn.load`` builds a model whose configuration asks for more
    parameter elements than the file holds (load turns it into ModelFileError)."""


_param_budget = contextvars.ContextVar("fastrnn_param_budget", default=None)


@contextlib.contextmanager
def parameter_budget(elements):
    """Within the block, layers may allocate at most `elements` parameter elements in all
    (``fastrnn.load``: what the file holds), so a crafted configuration cannot ask for
    gigabytes before its arrays are checked."""
    token = _param_budget.set([int(elements)])
    try:
        yield
    finally:
        _param_budget.reset(token)


def _charge(name, shape):
    budget = _param_budget.get()
    if budget is None:
        return
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    if n > budget[0]:
        raise ParameterBudgetExceeded(
            f"the saved configuration asks for parameter {name!r} of shape {tuple(shape)}, "
            f"more than the {budget[0]} elements the file still holds")
    budget[0] -= n


_BUILTIN_CLASSES = {}    # filled by Layer.__init_subclass__


def builtin_classes():
    """{class name: class} of fastrnn's public layers and models (what a model file may name
    without custom_objects)."""
    return dict(_BUILTIN_CLASSES, Layer=Layer)


class Layer:
    """Base of every layer and model.

    Subclasses call ``super().__init__()``, create parameters with ``add_parameter`` and
    assign sublayers as attributes (registered in assignment order).  They implement
    ``forward``/``backward`` and, to be saved by ``fastrnn.save``, ``get_config()`` returning
    the constructor's keyword arguments.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # fastrnn's own public layers and models, by class name, for fastrnn.load
        if cls.__module__.startswith("fastrnn.") and not cls.__name__.startswith("_"):
            _BUILTIN_CLASSES[cls.__name__] = cls


    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_grads", {})
        object.__setattr__(self, "_layers", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_layers" not in self.__dict__:
            if isinstance(value, Layer):
                raise AttributeError(f"{type(self).__name__}.__init__ must call "
                                     f"super().__init__() before assigning layers")
            object.__setattr__(self, name, value)
            return
        if isinstance(value, Layer) and not name.startswith("_"):
            self._layers[name] = value
        elif name in self._layers:
            del self._layers[name]
        object.__setattr__(self, name, value)

    # -- parameters ------------------------------------------------------------------------
    def add_parameter(self, name, value, dtype=None):
        """Register parameter `name`: an array (owned by the layer from now on), or a shape,
        for a zero-filled array of `dtype`."""
        if isinstance(value, np.ndarray):
            array = _c_array(value)
            _charge(name, array.shape)
        else:
            shape = (int(value),) if np.ndim(value) == 0 else tuple(int(v) for v in value)
            _charge(name, shape)             # before allocating
            array = np.zeros(shape, dtype)
        self._params[name] = array
        self._grads[name] = np.zeros_like(array)
        return array

    def named_layers(self, prefix=""):
        """(dotted name, layer) for this layer and every sublayer, depth first."""
        yield prefix, self
        for name, layer in self._layers.items():
            yield from layer.named_layers(f"{prefix}{name}.")

    def _collect(self, attr):
        out = {}
        for prefix, layer in self.named_layers():
            for name, arr in getattr(layer, attr).items():
                out[prefix + name] = arr
        return out

    def parameters(self):
        """Dict of dotted name -> parameter array (the live arrays, not copies)."""
        return self._collect("_params")

    @property
    def grads(self):
        """Dict of dotted name -> accumulated gradient (same keys and shapes as
        ``parameters()``; live arrays)."""
        return self._collect("_grads")

    def num_parameters(self):
        """Total number of parameter elements (this layer and its sublayers)."""
        return int(sum(a.size for a in self.parameters().values()))

    def zero_grad(self):
        """Set every accumulated gradient in ``grads`` to zero (in place)."""
        for g in self.grads.values():
            g[...] = 0

    def state_dict(self):
        """Dict of dotted name -> a copy of each parameter."""
        return {k: v.copy() for k, v in self.parameters().items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy arrays or torch tensors) into the parameters, in place.

        With ``strict=True`` the keys must match exactly; shapes must always match.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of name -> array, got "
                            f"{type(state_dict).__name__}")
        params = self.parameters()
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict does not match the layer: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        new, wrong = {}, []
        for k, dst in params.items():
            if k not in state_dict:
                continue
            src = _as_array(f"state_dict[{k!r}]", state_dict[k])
            if src.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{k!r}] must hold numbers, got dtype {src.dtype}")
            if src.shape != dst.shape:
                owner, local = self._owner(k)
                hint = owner._shape_hint(local, dst.shape, src.shape)
                wrong.append(f"state_dict[{k!r}] must have shape {dst.shape}, got "
                             f"{src.shape}" + (f" ({hint})" if hint else ""))
            new[k] = src
        if wrong:
            more = f"; and {len(wrong) - 3} more" if len(wrong) > 3 else ""
            raise ValueError("the state dict's shapes do not fit the layer: "
                             + "; ".join(wrong[:3]) + more)
        for k, src in new.items():       # all checked before anything is written
            params[k][...] = src
        self._weights_changed()
        return missing, unexpected

    def _owner(self, key):
        """(layer, its own parameter name) for a dotted parameter name."""
        for prefix, layer in self.named_layers():
            name = key[len(prefix):]
            if key.startswith(prefix) and name in layer._params:
                return layer, name
        return self, key

    def _shape_hint(self, name, expected, got):
        """Which size of the layer a parameter of the wrong shape disagrees with, e.g.
        "hidden_size: the layer has 7, the state dict 5" (None when there is nothing to
        add)."""
        return None

    def _weights_changed(self):
        """Hook: parameters were overwritten (drop anything derived from them)."""
        for _, layer in self.named_layers():
            if layer is not self:
                layer._on_weights_changed()
        self._on_weights_changed()

    def _on_weights_changed(self):
        pass

    # -- modes -----------------------------------------------------------------------------
    def train(self, mode=True):
        """Training mode (dropout active, forward keeps what backward needs)."""
        mode = check_bool("mode", mode)
        for _, layer in self.named_layers():
            object.__setattr__(layer, "training", mode)
            layer._on_weights_changed()
        return self

    def eval(self):
        """Inference mode (no dropout, no backward caches)."""
        return self.train(False)

    def _is_training(self, training):
        return self.training if training is None else check_bool("training", training)

    # -- calling ---------------------------------------------------------------------------
    def forward(self, x):
        """Compute the layer's output for `x` (in training mode, keep what backward needs).
        Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy):
        """Gradient w.r.t. the input of the last training-mode forward, given `dy` (w.r.t.
        its output); adds the parameter gradients into ``grads``. Subclasses implement
        it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # Sequential's protocol: one array in, one array out, lengths passed along.
    uses_lengths = False

    def chain_forward(self, x, lengths):
        """Sequential's call: forward `x`, with `lengths` for the layers that use them
        (``uses_lengths``); one array out."""
        return self.forward(x)

    def chain_lengths(self, x, lengths):
        """Sequential's call before ``chain_forward``: the lengths for this layer and the
        ones after it (the incoming ones; a masking layer computes its own from `x`)."""
        return lengths

    def chain_backward(self, dy):
        """Sequential's call: backward of ``chain_forward``; the input gradient."""
        return self.backward(dy)

    def output_shape(self, input_shape):
        """Output shape for an input of `input_shape` (None for unknown sizes)."""
        return tuple(input_shape)

    # -- configs ---------------------------------------------------------------------------
    def get_config(self):
        """The constructor's keyword arguments as JSON-ready values (what ``fastrnn.save``
        records to rebuild the layer)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no get_config(); define it (returning the "
            f"constructor's keyword arguments) to save this layer")

    @classmethod
    def from_config(cls, config):
        """Build the layer from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        try:
            cfg = self.get_config()
        except NotImplementedError:
            return f"{type(self).__name__}()"
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if not isinstance(v, list))
        return f"{type(self).__name__}({args})"


class ChainLayout:
    """Mixin of the layers whose layout a Sequential may set: ``batch_first=None`` takes the
    chain's (time-major on its own), True/False fix it."""

    def _init_layout(self, batch_first):
        self.batch_first = None if batch_first is None else check_bool("batch_first",
                                                                       batch_first)
        self._inherited_batch_first = False

    @property
    def layout_batch_first(self):
        """The layout in use: ``batch_first``, or the one inherited from a Sequential."""
        return self._inherited_batch_first if self.batch_first is None else self.batch_first


def no_cache_error(layer):
    return RuntimeError(f"{type(layer).__name__}.backward needs a forward call in training "
                        f"mode first (each forward serves one backward)")
