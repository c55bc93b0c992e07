"""Non-recurrent layers: Dense, Embedding, Masking, Dropout, activations, LastStep, Pool."""
import numpy as np

from fastrnn import init as _init
from fastrnn.engine.blas import matmul
from fastrnn.engine.threads import engine_threads
from fastrnn.functional import _as_array, _c_array, _prepare_lengths
from fastrnn.layers._base import (ChainLayout, Layer, check_bool, check_dtype, check_int,
                                  check_prob, float_input, no_cache_error,
                                  refuse_sequence_list)
from fastrnn.layers._recurrent import lengths_from_mask

__all__ = ["Dense", "Embedding", "Masking", "Dropout", "Tanh", "ReLU", "Sigmoid", "Softmax",
           "LastStep", "Pool", "ACTIVATIONS"]


def _check_dy(dy, shape, dtype):
    dy = float_input("dy", dy, dtype)
    if dy.shape != tuple(shape):
        raise ValueError(f"dy must have the shape of the layer's output, {tuple(shape)}, got "
                         f"{dy.shape}")
    return dy


# ----------------------------------------------------------------------------------------
# activations

def _sigmoid(x):
    # exp of a non-positive number only: no overflow warnings for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class _Activation(Layer):
    """Elementwise activation; no parameters.  Works in any float dtype (the input's)."""

    def forward(self, x, *, training=None):
        """The activation elementwise (x's float dtype; integers become float64)."""
        training = self._is_training(training)
        x = float_input("x", x, None)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        y = self._f(x)
        self._cache = (x, y) if training else None
        return y

    def backward(self, dy):
        """`dy` times the activation's derivative at the last training-mode forward's input."""
        cache = getattr(self, "_cache", None)
        if cache is None:
            raise no_cache_error(self)
        self._cache = None
        x, y = cache
        return self._df(x, y, _check_dy(dy, y.shape, y.dtype))

    def get_config(self):
        """Constructor arguments (none)."""
        return {}


class Tanh(_Activation):
    def _f(self, x):
        return np.tanh(x)

    def _df(self, x, y, dy):
        return dy * (1 - y * y)


class ReLU(_Activation):
    def _f(self, x):
        return np.maximum(x, 0)          # NaN stays NaN

    def _df(self, x, y, dy):
        return dy * (x > 0)


class Sigmoid(_Activation):
    def _f(self, x):
        return _sigmoid(x)

    def _df(self, x, y, dy):
        return dy * y * (1 - y)


class Softmax(_Activation):
    """Softmax over `axis` (default the last)."""

    def __init__(self, axis=-1):
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def _f(self, x):
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"axis {self.axis} is out of range for x of shape {x.shape}")
        return _softmax(x, self.axis)

    def _df(self, x, y, dy):
        return y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))

    def get_config(self):
        """Constructor arguments (see ``Layer.get_config``)."""
        return {"axis": self.axis}


ACTIVATIONS = {"tanh": Tanh, "relu": ReLU, "sigmoid": Sigmoid, "softmax": Softmax}


def _activation(name):
    if name is None or name == "linear":
        return None
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be None or one of {sorted(ACTIVATIONS)}, got "
                         f"{name!r}")
    return ACTIVATIONS[name]()


# ----------------------------------------------------------------------------------------
# Dense

class Dense(Layer):
    """``y = x @ weight.T + bias`` over the last axis of x (any leading dims, so it applies to
    every time step of a sequence), then an optional activation.  weight (out_features,
    in_features) and bias (out_features,) as ``torch.nn.Linear``; the default initialization is
    PyTorch's, U(-1/sqrt(in_features), 1/sqrt(in_features))."""

    def __init__(self, in_features, out_features, bias=True, activation=None,
                 dtype=np.float32, *, kernel_initializer="pytorch", bias_initializer="pytorch",
                 seed=None):
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.bias = check_bool("bias", bias)
        self.dtype = check_dtype(dtype)
        self.activation = activation
        self._act = _activation(activation)
        self._initializers = {"kernel_initializer": kernel_initializer,
                              "bias_initializer": bias_initializer}
        for k, v in self._initializers.items():
            _init.get(v, k)
        self.add_parameter("weight", (self.out_features, self.in_features), self.dtype)
        if self.bias:
            self.add_parameter("bias", (self.out_features,), self.dtype)
        self._cache = None
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw new weights with the layer's initializers (``seed``: int or Generator)."""
        rng = _init.as_generator(seed)
        fan = self.in_features
        w = self._params["weight"]
        w[...] = _init.get(self._initializers["kernel_initializer"])(w.shape, rng, self.dtype,
                                                                     fan=fan)
        if self.bias:
            b = self._params["bias"]
            b[...] = _init.get(self._initializers["bias_initializer"])(b.shape, rng,
                                                                       self.dtype, fan=fan)

    def forward(self, x, *, training=None):
        """``x @ weight.T + bias`` (then the activation) over x's last axis: (...,
        in_features) -> (..., out_features)."""
        training = self._is_training(training)
        x = float_input("x", x, self.dtype, last=self.in_features, what="in_features")
        lead = x.shape[:-1]
        x2 = _c_array(x.reshape(-1, self.in_features))
        y = np.empty((x2.shape[0], self.out_features), self.dtype)
        with engine_threads() as nthreads:
            # y = x2 @ weight.T    (N, out) = (N, in) @ (in, out)
            matmul(x2, self._params["weight"], y, trans_b=True, nthreads=nthreads)
        if self.bias:
            y += self._params["bias"]
        y = y.reshape(*lead, self.out_features)
        self._cache = x2 if training else None
        if self._act is not None:
            y = self._act.forward(y, training=training)
        return y

    def backward(self, dy):
        """Input gradient (..., in_features) for `dy` (..., out_features); adds the weight
        and bias gradients into ``grads``."""
        if self._cache is None:
            raise no_cache_error(self)
        x2 = self._cache
        self._cache = None
        if self._act is not None:
            dy = self._act.backward(dy)
        dy = float_input("dy", dy, self.dtype)
        if dy.size != x2.shape[0] * self.out_features or dy.shape[-1] != self.out_features:
            raise ValueError(f"dy must have the shape of the layer's output (..., "
                             f"{self.out_features}) with {x2.shape[0]} rows, got {dy.shape}")
        lead = dy.shape[:-1]
        dy2 = _c_array(dy.reshape(-1, self.out_features))
        dx = np.empty((dy2.shape[0], self.in_features), self.dtype)
        with engine_threads() as nthreads:
            # grad_weight += dy2.T @ x2    (out, in)
            matmul(dy2, x2, self._grads["weight"], trans_a=True, accumulate=True,
                   nthreads=nthreads)
            # dx = dy2 @ weight    (N, in)
            matmul(dy2, self._params["weight"], dx, nthreads=nthreads)
        if self.bias:
            self._grads["bias"] += dy2.sum(axis=0)
        return dx.reshape(*lead, self.in_features)

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.out_features)

    def _shape_hint(self, name, expected, got):
        if got[:1] != expected[:1]:
            return f"out_features: the layer has {expected[0]}, the state dict {got[0]}"
        if name == "weight" and len(got) == 2:
            return f"in_features: the layer has {expected[1]}, the state dict {got[1]}"
        return None

    def get_config(self):
        """Constructor arguments (see ``Layer.get_config``)."""
        cfg = dict(in_features=self.in_features, out_features=self.out_features,
                   bias=self.bias, activation=self.activation, dtype=self.dtype.name)
        cfg.update({k: v for k, v in self._initializers.items() if isinstance(v, str)})
        return cfg


# ----------------------------------------------------------------------------------------
# Embedding

class Embedding(Layer):
    """Lookup table: integer ids (any shape) -> vectors (..., embedding_dim), as
    ``torch.nn.Embedding`` (weight (num_embeddings, embedding_dim), N(0, 1) initialization;
    the ``padding_idx`` row starts at zero and gets no gradient).  No input gradient:
    ``backward`` returns None.

    ``mask_zero=True`` (Keras's option): id 0 is padding.  In a Sequential the layer then
    sets the lengths the layers after it use, from each row's ids != 0 (the layout is the
    chain's; padding must come after a row's valid steps); ``compute_lengths(ids)`` gives
    them outside a chain."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32, *,
                 initializer="normal", seed=None, mask_zero=False):
        super().__init__()
        self.mask_zero = check_bool("mask_zero", mask_zero)
        self._inherited_batch_first = False
        self.num_embeddings = check_int("num_embeddings", num_embeddings)
        self.embedding_dim = check_int("embedding_dim", embedding_dim)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)) \
                    or not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx must be None or an int in "
                                 f"[-{self.num_embeddings}, {self.num_embeddings}), got "
                                 f"{padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.dtype = check_dtype(dtype)
        self.initializer = initializer
        _init.get(initializer, "initializer")
        self.add_parameter("weight", (self.num_embeddings, self.embedding_dim), self.dtype)
        self._cache = None
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw a new table with the layer's initializer (the padding row set to zero)."""
        w = self._params["weight"]
        w[...] = _init.get(self.initializer)(w.shape, _init.as_generator(seed), self.dtype)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0

    def forward(self, ids, *, training=None):
        """Vectors for integer `ids` of any shape: (...) -> (..., embedding_dim)."""
        training = self._is_training(training)
        ids = _as_array("ids", ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must hold integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"ids must be in [0, {self.num_embeddings}), got values from "
                             f"{ids.min()} to {ids.max()}")
        self._cache = ids if training else None
        return self._params["weight"][ids]

    def compute_lengths(self, ids, batch_first=None):
        """With mask_zero: (B,) lengths from 2-D `ids` ((T, B), or (B, T) with batch_first;
        None: the Sequential's layout), each row's valid steps being its ids != 0."""
        if not self.mask_zero:
            raise ValueError("Embedding.compute_lengths needs mask_zero=True")
        ids = _as_array("ids", ids)
        bf = self._inherited_batch_first if batch_first is None else bool(batch_first)
        if ids.ndim != 2:
            raise ValueError(f"with mask_zero, ids must be 2-D ({'(B, T)' if bf else '(T, B)'}),"
                             f" got shape {ids.shape}")
        T, B = (ids.shape[1], ids.shape[0]) if bf else ids.shape
        return lengths_from_mask(ids != 0, T, B, bf)

    def chain_lengths(self, x, lengths):
        return self.compute_lengths(x) if self.mask_zero else lengths

    def backward(self, dy):
        """Scatter-add `dy` (..., embedding_dim) into the table's gradient (not the padding
        row); returns None (ids have no gradient)."""
        if self._cache is None:
            raise no_cache_error(self)
        ids = self._cache
        self._cache = None
        dy = _check_dy(dy, (*ids.shape, self.embedding_dim), self.dtype)
        flat_ids = ids.reshape(-1)
        flat_dy = dy.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = flat_ids != self.padding_idx
            flat_ids, flat_dy = flat_ids[keep], flat_dy[keep]
        np.add.at(self._grads["weight"], flat_ids, flat_dy)
        return None

    def output_shape(self, input_shape):
        return (*input_shape, self.embedding_dim)

    def _shape_hint(self, name, expected, got):
        if len(got) != 2:
            return None
        if got[0] != expected[0]:
            return f"num_embeddings: the layer has {expected[0]}, the state dict {got[0]}"
        return f"embedding_dim: the layer has {expected[1]}, the state dict {got[1]}"

    def get_config(self):
        """Constructor arguments (see ``Layer.get_config``)."""
        cfg = dict(num_embeddings=self.num_embeddings, embedding_dim=self.embedding_dim,
                   padding_idx=self.padding_idx, dtype=self.dtype.name)
        if self.mask_zero:
            cfg["mask_zero"] = True
        if isinstance(self.initializer, str):
            cfg["initializer"] = self.initializer
        return cfg


# ----------------------------------------------------------------------------------------
# Masking

class Masking(ChainLayout, Layer):
    """Keras's ``Masking``: a step whose features all equal `mask_value` is padding.

    In a Sequential the layer sets the lengths the layers after it use (as Keras's mask;
    lengths given to the model are replaced), so each row's padded steps must come after
    its valid ones; its output is x with the padded steps zeroed (as Keras).  x: (T, B, F),
    or (B, T, F) in the batch-first layout; ``batch_first=None`` (default) takes the
    Sequential's layout.  ``compute_lengths(x)`` gives the lengths outside a chain."""

    def __init__(self, mask_value=0.0, batch_first=None):
        super().__init__()
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.number)):
            raise TypeError(f"mask_value must be a number, got {mask_value!r}")
        self.mask_value = float(mask_value)
        self._init_layout(batch_first)
        self._cache = None

    def _input(self, x):
        bf = self.layout_batch_first
        refuse_sequence_list(x, bf, "F")
        x = float_input("x", x, None, ndim=3, what="3-D ((B, T, F) with batch_first)"
                        if bf else "3-D (T, B, F)")
        return x if x.dtype.kind == "f" else x.astype(np.float64)

    def _mask(self, x):
        return np.any(x != self.mask_value, axis=-1)

    def compute_lengths(self, x):
        """(B,) lengths: each row's steps up to its last step with a feature != mask_value
        (a padded step before a valid one is refused)."""
        x = self._input(x)
        bf = self.layout_batch_first
        T, B = (x.shape[1], x.shape[0]) if bf else x.shape[:2]
        return lengths_from_mask(self._mask(x), T, B, bf)

    def chain_lengths(self, x, lengths):
        return self.compute_lengths(x)

    def forward(self, x, *, training=None):
        """x with its padded steps (all features == mask_value) set to zero."""
        training = self._is_training(training)
        x = self._input(x)
        keep = self._mask(x)[..., None].astype(x.dtype)
        self._cache = (keep, x.shape) if training else None
        return x * keep

    def backward(self, dy):
        """`dy` with the padded steps zeroed."""
        if self._cache is None:
            raise no_cache_error(self)
        (keep, shape), self._cache = self._cache, None
        return _check_dy(dy, shape, keep.dtype) * keep

    def get_config(self):
        """Constructor arguments (see ``Layer.get_config``)."""
        return {"mask_value": self.mask_value, "batch_first": self.batch_first}


# ----------------------------------------------------------------------------------------
# Dropout

class Dropout(Layer):
    """Inverted dropout: in training mode each element is zeroed with probability p and the
    rest scaled by 1/(1-p); the identity in eval mode.  ``seed``: int or Generator."""

    def __init__(self, p=0.5, *, seed=None):
        super().__init__()
        self.p = check_prob("p", p)
        self._rng = _init.as_generator(seed)
        self._cache = None

    def forward(self, x, *, training=None):
        """In training mode zero each element with probability p and scale the rest by
        1/(1-p); the identity in eval mode."""
        training = self._is_training(training)
        x = float_input("x", x, None)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        if not training or self.p == 0.0:
            self._cache = ("identity", x.shape) if training else None
            return x
        keep = (self._rng.random(x.shape) >= self.p).astype(x.dtype)
        keep *= 1.0 / (1.0 - self.p)
        self._cache = ("mask", keep)
        return x * keep

    def backward(self, dy):
        """`dy` times the last forward's mask (the identity in eval mode)."""
        if self._cache is None:
            raise no_cache_error(self)
        kind, val = self._cache
        self._cache = None
        if kind == "identity":
            return _check_dy(dy, val, None)
        return _check_dy(dy, val.shape, val.dtype) * val

    def get_config(self):
        """Constructor arguments (see ``Layer.get_config``)."""
        return {"p": self.p}


# ----------------------------------------------------------------------------------------
# sequence reductions

class _SequenceReduce(ChainLayout, Layer):
    """Base of LastStep and Pool.  ``batch_first=None`` (the default) takes the layout from
    the recurrent layer before it in a Sequential (time-major on its own); True/False fix it
    (a Sequential refuses a fixed layout that differs from its recurrent layers')."""

    uses_lengths = True

    def __init__(self, batch_first=None):
        super().__init__()
        self._init_layout(batch_first)
        self._cache = None

    def _input(self, x, lengths):
        bf = self.layout_batch_first
        refuse_sequence_list(x, bf, "H")
        x = float_input("x", x, None, ndim=3, what="3-D ((B, T, H) with batch_first)"
                        if bf else "3-D (T, B, H)")
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        if bf:
            x = x.transpose(1, 0, 2)
        T, B, _ = x.shape
        if T == 0:
            raise ValueError("x must have at least one time step")
        lengths = _prepare_lengths(lengths, T, B)
        return x, lengths

    def chain_forward(self, x, lengths):
        return self.forward(x, lengths=lengths)

    def output_shape(self, input_shape):
        return (input_shape[0] if self.layout_batch_first else input_shape[1], input_shape[2])

    def _finish(self, dx):
        return dx.transpose(1, 0, 2) if self.layout_batch_first else dx

    def get_config(self):
        return {"batch_first": self.batch_first}


class LastStep(_SequenceReduce):
    """Each row's output at its last valid step: (T, B, H) -> (B, H), or (B, T, H) -> (B, H)
    in the batch-first layout (``lengths`` (B,) or None for full rows).  Use after a
    recurrent layer for many-to-one models; ``batch_first=None`` (default) takes the layout
    of the recurrent layer before it in a Sequential."""

    def forward(self, x, lengths=None, *, training=None):
        """Each row's output at its last valid step (``lengths`` (B,), or None: the last
        step): (T, B, H) or (B, T, H) -> (B, H)."""
        training = self._is_training(training)
        x, lengths = self._input(x, lengths)
        T, B, _ = x.shape
        last = np.full(B, T - 1) if lengths is None else lengths - 1
        self._cache = (x.shape, x.dtype, last) if training else None
        return x[last, np.arange(B)]

    def backward(self, dy):
        """Gradient (T, B, H) (or (B, T, H)) holding `dy` (B, H) at each row's last valid
        step, zeros elsewhere."""
        if self._cache is None:
            raise no_cache_error(self)
        shape, dtype, last = self._cache
        self._cache = None
        dy = _check_dy(dy, (shape[1], shape[2]), dtype)
        dx = np.zeros(shape, dtype)
        dx[last, np.arange(shape[1])] = dy
        return self._finish(dx)


class Pool(_SequenceReduce):
    """Mean or max over each row's valid steps: (T, B, H) -> (B, H), or (B, T, H) -> (B, H)
    in the batch-first layout; ``batch_first=None`` (default) takes the layout of the
    recurrent layer before it in a Sequential."""

    def __init__(self, mode="mean", batch_first=None):
        super().__init__(batch_first)
        if mode not in ("mean", "max"):
            raise ValueError(f"mode must be 'mean' or 'max', got {mode!r}")
        self.mode = mode

    def forward(self, x, lengths=None, *, training=None):
        """Mean or max over each row's valid steps (``lengths`` (B,), or None: all): (T, B,
        H) or (B, T, H) -> (B, H)."""
        training = self._is_training(training)
        x, lengths = self._input(x, lengths)
        T, B, H = x.shape
        n = np.full(B, T) if lengths is None else lengths
        valid = (np.arange(T)[:, None] < n[None, :])[:, :, None]       # (T, B, 1)
        if self.mode == "mean":
            y = np.where(valid, x, 0).sum(axis=0) / n[:, None].astype(x.dtype)
            cache = (x.shape, x.dtype, valid, n)
        else:
            masked = np.where(valid, x, -np.inf)
            arg = masked.argmax(axis=0)                                 # (B, H)
            y = np.take_along_axis(x, arg[None], axis=0)[0]
            cache = (x.shape, x.dtype, arg, None)
        self._cache = cache if training else None
        return y.astype(x.dtype, copy=False)

    def backward(self, dy):
        """Gradient w.r.t. the pooled sequence: `dy` (B, H) spread over the valid steps
        (mean) or to each maximum's step (max)."""
        if self._cache is None:
            raise no_cache_error(self)
        shape, dtype, aux, n = self._cache
        self._cache = None
        T, B, H = shape
        dy = _check_dy(dy, (B, H), dtype)
        if self.mode == "mean":
            dx = np.where(aux, (dy / n[:, None].astype(dtype))[None], 0).astype(dtype)
        else:
            dx = np.zeros(shape, dtype)
            np.put_along_axis(dx, aux[None], dy[None], axis=0)
        return self._finish(dx)

    def get_config(self):
        """Constructor arguments (see ``Layer.get_config``)."""
        return {"mode": self.mode, "batch_first": self.batch_first}
