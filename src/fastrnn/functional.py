"""NumPy-in, NumPy-out recurrent layers: forward and backward-through-time of one layer in one
direction, on the compiled kernels.

Conventions (PyTorch's, so weights move between the libraries unchanged):

- ``x`` is time-major ``(T, B, I)``; states ``h0``, ``c0``, ``hT``, ``cT`` are ``(B, H)``;
  outputs ``y`` are ``(T, B, H)``.
- Weights ``w_ih (G*H, I)``, ``w_hh (G*H, H)``, biases ``b_ih``, ``b_hh`` ``(G*H,)``, with the
  gate blocks stacked in rows: RNN G=1, LSTM G=4 (i|f|g|o), GRU G=3 (r|z|n).
- ``lengths`` (optional, ``(B,)`` integers in ``1..T``) gives each row's valid prefix, with
  PyTorch packed-sequence semantics: outputs past a row's end are 0, its final state is the
  state at its last valid step, and with ``reverse=True`` the row's recurrence starts at its
  own last valid step.

Dtypes: the compute dtype is x's (float32 or float64; float16 is computed in float32). Every
other float argument is cast to it; every result (outputs, states, gradients) has x's dtype.
Non-contiguous and read-only arrays are accepted (copied only where needed).

Empty inputs: B == 0 or T == 0 is allowed and gives empty outputs; with T == 0 the final
state is the initial state (zero steps leave it unchanged), and backward passes dhT to dh0.

With ``training=True`` (default) the forward returns a cache holding what backward needs;
the backward consumes it (its buffers are overwritten), so each cache serves ONE backward
call.  The cache keeps references to x and the weights: do not modify them in place between
forward and backward.  With ``training=False`` nothing is kept (cache is None) and the
workspace is O(B*G*H) beyond the outputs.
"""
import numbers
from collections import namedtuple

import numpy as np

from fastrnn.engine import (cpu as _cpu, gru as _gru, lstm as _lstm, lstmp as _lstmp, rnn as _rnn,
                            variants as _variants)
from fastrnn.engine.threads import engine_threads
from fastrnn.engine.workspace import release
from fastrnn._results import (GRUGrads, LayerNormGRUGrads, LayerNormLSTMGrads, LSTMGrads,
                              PeepholeLSTMGrads, ProjectionLSTMGrads, RNNGrads)

__all__ = [
    "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
    "peephole_lstm_forward", "peephole_lstm_backward", "projection_lstm_forward",
    "projection_lstm_backward", "ProjectionLSTMGrads",
    "gru_forward", "gru_backward", "RNNGrads", "LSTMGrads", "PeepholeLSTMGrads", "GRUGrads",
    "layernorm_lstm_forward", "layernorm_lstm_backward", "layernorm_gru_forward",
    "layernorm_gru_backward", "LayerNormLSTMGrads", "LayerNormGRUGrads",
    "prepare_rnn", "prepare_lstm", "prepare_gru", "rnn_step", "lstm_step", "gru_step",
    "StepWeights",
]

_BLAS_INT_MAX = 2**31 - 1


class Cache:
    """What a backward call needs from its forward call.  Opaque; single use."""

    __slots__ = ("kind", "variant", "x", "w_ih", "w_hh", "lengths", "reverse", "saved",
                 "has_b_ih", "has_b_hh", "out_dtype", "consumed")

    def __init__(self, kind, variant, x, w_ih, w_hh, lengths, reverse, saved, has_b_ih,
                 has_b_hh, out_dtype):
        self.kind = kind
        self.variant = variant
        self.x = x
        self.w_ih = w_ih
        self.w_hh = w_hh
        self.lengths = lengths
        self.reverse = reverse
        self.saved = saved
        self.has_b_ih = has_b_ih
        self.has_b_hh = has_b_hh
        self.out_dtype = out_dtype
        self.consumed = False

    def __repr__(self):
        T, B, I = self.x.shape
        state = "consumed" if self.consumed else "ready"
        return (f"<fastrnn {self.kind} cache T={T} B={B} I={I} H={self.w_hh.shape[1]} "
                f"dtype={self.x.dtype} {state}>")


# ----------------------------------------------------------------------------------------
# validation

def _float_array(name, value, dtype=None):
    """`value` as an ndarray of a float dtype; TypeError for anything else."""
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    arr = value if isinstance(value, np.ndarray) else _as_array(name, value)
    if arr.dtype.kind != "f" or arr.dtype.itemsize > 8:
        raise TypeError(f"{name} must hold float16, float32 or float64 data, got dtype "
                        f"{arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def _as_array(name, value):
    if hasattr(value, "detach") and hasattr(value, "cpu"):      # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}") from exc


def _c_array(arr, dtype=None):
    """C-contiguous AND aligned (a copy when needed): the C kernels read through typed
    pointers, and a misaligned float pointer is undefined behaviour even where the CPU
    tolerates it (UBSan flags it).  (Not np.require: it costs 5 us a call.)"""
    if type(arr) is np.ndarray and (dtype is None or arr.dtype == dtype):
        flags = arr.flags
        if flags.c_contiguous and flags.aligned:
            return arr
    out = np.ascontiguousarray(arr, dtype=dtype)
    return out if out.flags.aligned else out.copy()


def _compute_dtype(x):
    """Native float32 for float16/float32 data, native float64 for float64 (any byte order)."""
    return np.dtype(np.float32) if x.dtype.itemsize <= 4 else np.dtype(np.float64)


def _check_shape(name, arr, expected, meaning):
    if arr.shape != expected:
        raise ValueError(f"{name} must have shape {meaning} = {expected}, got {arr.shape}")


def _ready(name, value, shape, meaning, dtype, optional=True):
    """Validated, C-contiguous array of `dtype` and `shape`, or None if allowed."""
    if value is None:
        if optional:
            return None
        raise TypeError(f"{name} must be an array of shape {meaning}, got None")
    arr = _float_array(name, value)
    _check_shape(name, arr, shape, meaning)
    return _c_array(arr, dtype=dtype)


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _prepare_x(x):
    x = _float_array("x", x)
    if x.ndim != 3:
        raise ValueError(f"x must be 3-D (T, B, I), time-major, got shape {x.shape}")
    T, B, _ = x.shape
    if T * B > _BLAS_INT_MAX:
        raise ValueError(f"x is too large: T*B = {T * B} rows exceeds the 32-bit BLAS limit "
                         f"{_BLAS_INT_MAX}")
    return x, _compute_dtype(x), x.dtype.newbyteorder("=")


def _prepare_weights(G, w_ih, w_hh, b_ih, b_hh, I, dtype):
    gate_rows = {1: "H", 3: "3*H", 4: "4*H"}[G]
    w_hh = _float_array("w_hh", w_hh)
    if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(f"w_hh must have shape ({gate_rows}, H) with H >= 1, got "
                         f"{w_hh.shape}")
    H = w_hh.shape[1]
    if I < 1:
        raise ValueError(f"x must have input size I >= 1 (x.shape[2]), got {I}")
    if I > _BLAS_INT_MAX:
        raise ValueError(f"x is too large: input size I = {I} (x.shape[2]) exceeds the 32-bit "
                         f"BLAS limit {_BLAS_INT_MAX}")
    if G * H > _BLAS_INT_MAX:
        raise ValueError(f"w_hh is too large: {gate_rows} = {G * H} gate rows exceed the "
                         f"32-bit BLAS limit {_BLAS_INT_MAX}")
    w_ih = _ready("w_ih", w_ih, (G * H, I), f"({gate_rows}, I)", dtype, optional=False)
    w_hh = _c_array(w_hh, dtype=dtype)
    b_ih = _ready("b_ih", b_ih, (G * H,), f"({gate_rows},)", dtype)
    b_hh = _ready("b_hh", b_hh, (G * H,), f"({gate_rows},)", dtype)
    return w_ih, w_hh, b_ih, b_hh, H


def _prepare_lengths(lengths, T, B):
    """int64 (B,) lengths, or None when absent or when every row is full (same result)."""
    if lengths is None:
        return None
    arr = _as_array("lengths", lengths)
    if arr.size == 0 and arr.dtype.kind in "fb":       # lengths=[] for an empty batch
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape (B,) = ({B},), got {arr.shape}")
    if B and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths must be in [1, T] = [1, {T}], got values from "
                         f"{arr.min()} to {arr.max()}")
    if B == 0 or arr.min() == T:
        return None
    # a private, read-only copy: the cache keeps it for backward, which must not see the
    # caller's later changes to their array
    out = np.array(arr, dtype=np.int64, order="C")
    out.flags.writeable = False
    return out


def _prepare_forward(G, x, states, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training):
    x, dtype, out_dtype = _prepare_x(x)
    T, B, I = x.shape
    w_ih, w_hh, b_ih, b_hh, H = _prepare_weights(G, w_ih, w_hh, b_ih, b_hh, I, dtype)
    states = [_ready(name, s, (B, H), "(B, H)", dtype) for name, s in states]
    x, lengths, reverse, training = _prepare_run(x, dtype, lengths, reverse, training)
    return x, states, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training, out_dtype


def _prepare_run(x, dtype, lengths, reverse, training):
    """What every sequence call checks besides its weights: lengths, the flags, and x as a
    C-contiguous array of the compute dtype (padding cleaned for training)."""
    T, B, _ = x.shape
    lengths = _prepare_lengths(lengths, T, B)
    reverse = _check_flag("reverse", reverse)
    training = _check_flag("training", training)
    x = _c_array(x, dtype=dtype)
    if lengths is not None and training:         # inference never reads padded steps
        x = _clean_padding(x, lengths)
    return x, lengths, reverse, training


def _clean_padding(x, lengths):
    """x with its padded steps (t >= lengths[b]) zeroed when any of them is NaN or inf.

    The kernels never use a padded step's value, but the weight gradient multiplies every
    row of x by its (zero) gate gradient, and 0 * NaN = NaN: PyTorch's packed sequences never
    read padding, and neither may any result here.  Finite padding is left alone (no copy)."""
    T = x.shape[0]
    pad = np.arange(T)[:, None] >= lengths[None, :]               # (T, B)
    if np.isfinite(x[pad]).all():
        return x
    x = x.copy()
    x[pad] = 0
    return x


def _check_cache(cache, kind):
    if cache is None:
        raise ValueError(f"cache is None: {kind}_forward ran with training=False, which "
                         f"keeps nothing for backward")
    if not isinstance(cache, Cache):
        raise TypeError(f"cache must be the cache returned by {kind}_forward, got "
                        f"{type(cache).__name__}")
    if cache.kind != kind:
        raise TypeError(f"cache comes from {cache.kind}_forward; {kind}_backward needs the "
                        f"cache of {kind}_forward")
    if cache.consumed:
        raise ValueError("cache was already used by a backward call, which overwrote its "
                         "buffers; run the forward again for another backward")


def _prepare_backward(cache, kind, grads):
    """Validated output gradients [(name, value), ...] in the cache's dtype."""
    _check_cache(cache, kind)
    T, B, _ = cache.x.shape
    H = cache.w_hh.shape[1]
    out = []
    for name, value in grads:
        shape, meaning = ((T, B, H), "(T, B, H)") if name == "dy" else ((B, H), "(B, H)")
        out.append(_ready(name, value, shape, meaning, cache.x.dtype))
    return out


def _cast(out_dtype, *arrays):
    return [a if a is None or a.dtype == out_dtype else a.astype(out_dtype) for a in arrays]


def _empty_forward(x, states, H, out_dtype):
    """Results of a forward with T == 0 or B == 0 (no kernel call)."""
    T, B, _ = x.shape
    y = np.zeros((T, B, H), out_dtype)
    finals = [np.zeros((B, H), out_dtype) if s is None else s.astype(out_dtype)
              for s in states]
    return y, finals


def _empty_backward(cache, state_grads):
    """Gradients for a forward with T == 0 or B == 0: states pass through unchanged."""
    T, B, I = cache.x.shape
    dtype = cache.x.dtype
    d_states = [np.zeros((B, cache.w_hh.shape[1]), dtype) if d is None else d.copy()
                for d in state_grads]
    dx = np.zeros((T, B, I), dtype)
    return dx, d_states, np.zeros_like(cache.w_ih), np.zeros_like(cache.w_hh)


def _bias_grads(cache, db_ih, db_hh):
    return (db_ih if cache.has_b_ih else None), (db_hh if cache.has_b_hh else None)


def _sum_bias(b_ih, b_hh):
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return b_ih + b_hh


def _recycle(cache):
    """The backward has consumed the cache: its saved buffers go back to the pool."""
    saved, cache.saved = cache.saved, None
    if saved is not None:
        release(saved)


def _clip_arg(value):
    """clip_hidden_grad as a float for the kernels (0 = off)."""
    if value is None:
        return 0.0
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"clip_hidden_grad must be None or a positive finite number, got "
                         f"{value!r}")
    return float(value)


def _is_empty(x):
    return x.shape[0] == 0 or x.shape[1] == 0


# ----------------------------------------------------------------------------------------
# Elman RNN

def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, nonlinearity="tanh", lengths=None,
                reverse=False, training=True, recurrent_mask=None, zoneout_h=None):
    """Elman RNN over a sequence: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    x (T, B, I); h0 (B, H) or None; w_ih (H, I); w_hh (H, H); b_ih, b_hh (H,) or None;
    nonlinearity "tanh" or "relu".  Returns ``y (T, B, H), hT (B, H), cache``.

    Regularizers (see ``lstm_forward``): ``recurrent_mask`` (B, H) multiplies h where it
    enters the recurrent product (variational recurrent dropout); ``zoneout_h`` is a
    (T, B, H) 0/1 array (1: the unit keeps its previous value at that step) or a
    probability in [0, 1) (evaluation: h' = z*h + (1-z)*h~).
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    if recurrent_mask is not None or zoneout_h is not None:
        y, (hT,), cache = _variant_forward(
            "rnn", "rnn_" + nonlinearity, x, [("h0", h0)], w_ih, w_hh, b_ih, b_hh, None,
            1e-5, recurrent_mask, zoneout_h, None, lengths, reverse, training)
        return y, hT, cache
    x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, reverse, training, out_dtype = \
        _prepare_forward(1, x, [("h0", h0)], w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                         training)
    relu = nonlinearity == "relu"
    if _is_empty(x):
        y, (hT,) = _empty_forward(x, [h0], w_hh.shape[1], out_dtype)
        saved = None
    else:
        with engine_threads() as nthreads:
            nthreads, by_rows = _plan(x, w_hh, nthreads)
            y, hT, saved = _rnn.forward(x, w_ih, w_hh, _sum_bias(b_ih, b_hh), h0, lengths,
                                        reverse, training, relu, nthreads, by_rows)
        y, hT = _cast(out_dtype, y, hT)
    cache = Cache("rnn", relu, x, w_ih, w_hh, lengths, reverse, saved, b_ih is not None,
                  b_hh is not None, out_dtype) if training else None
    return y, hT, cache


def rnn_backward(dy, dhT, cache, *, clip_hidden_grad=None):
    """Gradients of an rnn_forward call.  dy (T, B, H) or None; dhT (B, H) or None.

    Returns ``RNNGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)`` (db_* None without bias).
    ``clip_hidden_grad`` (a positive number, optional) clamps the gradient carried back
    through the recurrence to [-c, c] at every step (the gradient arriving at h_t from the
    later steps, dhT included, before dy_t is added): the results are then not the exact
    gradient, by design.
    """
    if isinstance(cache, Cache) and isinstance(cache.variant, _Variant):
        return RNNGrads(*_variant_backward("rnn", cache, [("dy", dy), ("dhT", dhT)],
                                           clip_hidden_grad))
    clip = _clip_arg(clip_hidden_grad)
    dy, dhT = _prepare_backward(cache, "rnn", [("dy", dy), ("dhT", dhT)])
    cache.consumed = True
    if _is_empty(cache.x):
        dx, (dh0,), dw_ih, dw_hh = _empty_backward(cache, [dhT])
        db = np.zeros(cache.w_hh.shape[0], cache.x.dtype)
    else:
        with engine_threads() as nthreads:
            nthreads, by_rows = _plan(cache.x, cache.w_hh, nthreads)
            dx, dh0, dw_ih, dw_hh, db = _rnn.backward(
                dy, dhT, cache.x, cache.w_ih, cache.w_hh, cache.lengths, cache.reverse,
                cache.saved, True, cache.variant, nthreads, clip, by_rows)
    _recycle(cache)
    db_ih, db_hh = _bias_grads(cache, db, None if db is None else db.copy())
    return RNNGrads(*_cast(cache.out_dtype, dx, dh0, dw_ih, dw_hh, db_ih, db_hh))


# ----------------------------------------------------------------------------------------
# LSTM

def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, lengths=None, reverse=False,
                 training=True, recurrent_mask=None, zoneout_h=None, zoneout_c=None):
    """LSTM over a sequence (gate blocks i|f|g|o):
    ``c' = f*c + i*g,  h' = o*tanh(c')``.

    x (T, B, I); h0, c0 (B, H) or None; w_ih (4H, I); w_hh (4H, H); b_ih, b_hh (4H,) or None.
    Returns ``y (T, B, H), hT (B, H), cT (B, H), cache``.

    Regularizers, fused into the recurrence (the masks are the caller's: fastrnn.layers
    draws them from a seeded counter-based generator):

    - ``recurrent_mask`` (B, H): h enters the recurrent product as ``h * recurrent_mask``
      at every step (variational recurrent dropout, Gal & Ghahramani 2016: one mask per
      sequence, e.g. 0 or 1/(1-p)); the state itself is not masked.
    - ``zoneout_h``, ``zoneout_c`` (Krueger et al. 2016): a (T, B, H) array of 0/1 (1: at
      that step the unit keeps its previous value, ``h' = h``), or a probability z in
      [0, 1) for evaluation, ``h' = z*h + (1-z)*h~``.  The new h~ is computed from the
      candidate cell f*c + i*g before the cell's own zoneout.

    The gradients (``lstm_backward``) are exact for the masks given.
    """
    if recurrent_mask is not None or zoneout_h is not None or zoneout_c is not None:
        y, (hT, cT), cache = _variant_forward(
            "lstm", "lstm", x, [("h0", h0), ("c0", c0)], w_ih, w_hh, b_ih, b_hh, None, 1e-5,
            recurrent_mask, zoneout_h, zoneout_c, lengths, reverse, training)
        return y, hT, cT, cache
    return _lstm_forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse,
                         training)


def peephole_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, *, lengths=None,
                          reverse=False, training=True):
    """LSTM with diagonal peephole connections (Gers & Schmidhuber 2000; ONNX's ``P``):
    ``i = sigmoid(W_i x + U_i h + b_i + p_i*c)``, ``f = sigmoid(... + p_f*c)``,
    ``c' = f*c + i*g``, ``o = sigmoid(... + p_o*c')``, ``h' = o*tanh(c')``.

    As lstm_forward, plus w_peep (3H,) = p_i|p_f|p_o.  The same kernels run both cells (the
    peepholes are one more term in the fused gate update); the functions are separate
    because the gradients have one more field (PeepholeLSTMGrads.dw_peep), and code that
    unpacks LSTMGrads' seven fields must keep working.
    """
    return _lstm_forward("peephole_lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, lengths,
                         reverse, training)


def _lstm_forward(kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, lengths, reverse,
                  training):
    x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths, reverse, training, out_dtype = \
        _prepare_forward(4, x, [("h0", h0), ("c0", c0)], w_ih, w_hh, b_ih, b_hh, lengths,
                         reverse, training)
    if kind == "peephole_lstm":
        H = w_hh.shape[1]
        w_peep = _ready("w_peep", w_peep, (3 * H,), "(3*H,)", x.dtype, optional=False)
    if _is_empty(x):
        y, (hT, cT) = _empty_forward(x, [h0, c0], w_hh.shape[1], out_dtype)
        saved = None
    else:
        with engine_threads() as nthreads:
            nthreads, by_rows = _plan(x, w_hh, nthreads)
            y, hT, cT, saved = _lstm.forward(x, w_ih, w_hh, _sum_bias(b_ih, b_hh), h0, c0,
                                             lengths, reverse, training, nthreads, by_rows,
                                             _fuse_input(w_ih, w_hh, x.shape[1]), w_peep)
        y, hT, cT = _cast(out_dtype, y, hT, cT)
    cache = Cache(kind, w_peep, x, w_ih, w_hh, lengths, reverse, saved, b_ih is not None,
                  b_hh is not None, out_dtype) if training else None
    return y, hT, cT, cache


def lstm_backward(dy, dhT, dcT, cache, *, clip_hidden_grad=None):
    """Gradients of an lstm_forward call.  dy (T, B, H), dhT, dcT (B, H); each may be None.

    Returns ``LSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``.
    ``clip_hidden_grad`` (a positive number, optional) clamps the gradient carried back
    through the recurrence to [-c, c] at every step (the gradient arriving at h_t from the
    later steps, dhT included, before dy_t is added): the results are then not the exact
    gradient, by design.
    """
    if isinstance(cache, Cache) and isinstance(cache.variant, _Variant):
        return LSTMGrads(*_variant_backward("lstm", cache, [("dy", dy), ("dhT", dhT),
                                                            ("dcT", dcT)], clip_hidden_grad))
    return LSTMGrads(*_lstm_backward("lstm", dy, dhT, dcT, cache, clip_hidden_grad)[:7])


def peephole_lstm_backward(dy, dhT, dcT, cache, *, clip_hidden_grad=None):
    """Gradients of a peephole_lstm_forward call (arguments as lstm_backward).

    Returns ``PeepholeLSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep)``.
    """
    return PeepholeLSTMGrads(*_lstm_backward("peephole_lstm", dy, dhT, dcT, cache,
                                             clip_hidden_grad))


def _lstm_backward(kind, dy, dhT, dcT, cache, clip_hidden_grad):
    clip = _clip_arg(clip_hidden_grad)
    dy, dhT, dcT = _prepare_backward(cache, kind, [("dy", dy), ("dhT", dhT), ("dcT", dcT)])
    cache.consumed = True
    w_peep = cache.variant
    dw_peep = None
    if _is_empty(cache.x):
        dx, (dh0, dc0), dw_ih, dw_hh = _empty_backward(cache, [dhT, dcT])
        db = np.zeros(cache.w_hh.shape[0], cache.x.dtype)
        if w_peep is not None:
            dw_peep = np.zeros_like(w_peep)
    else:
        with engine_threads() as nthreads:
            nthreads, by_rows = _plan(cache.x, cache.w_hh, nthreads)
            dx, dh0, dc0, dw_ih, dw_hh, db = _lstm.backward(
                dy, dhT, dcT, cache.x, cache.w_ih, cache.w_hh, cache.lengths, cache.reverse,
                cache.saved, True, nthreads, clip, by_rows, w_peep)
        if w_peep is not None:
            dw_peep = _peephole_grads(cache)
    _recycle(cache)
    db_ih, db_hh = _bias_grads(cache, db, None if db is None else db.copy())
    return _cast(cache.out_dtype, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep)


def _peephole_grads(cache):
    """dw_peep (3H,) from the pre-activation gradients the backward kernel left in the saved
    gates and the saved cell states: sums over every step and row (padded steps have zero
    gradients) of da_i * c_{t-1}, da_f * c_{t-1} and da_o * c_t."""
    gates, hs, cs, tanh_c = cache.saved
    T = cache.x.shape[0]
    H = cache.w_hh.shape[1]
    c_prev, c_new = (cs[1:], cs[:T]) if cache.reverse else (cs[:T], cs[1:])
    return np.concatenate([np.einsum("tbh,tbh->h", gates[..., :H], c_prev),
                           np.einsum("tbh,tbh->h", gates[..., H:2 * H], c_prev),
                           np.einsum("tbh,tbh->h", gates[..., 3 * H:], c_new)])


def projection_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *, lengths=None,
                            reverse=False, training=True):
    """Projection LSTM (LSTMP, Sak et al. 2014; ``torch.nn.LSTM(proj_size=P)``): the LSTM's
    gates from x and the P-wide h, ``c' = f*c + i*g``, ``h' = W_hr (o*tanh(c'))``.

    x (T, B, I); h0 (B, P) and c0 (B, H) or None; w_ih (4H, I); w_hh (4H, P); w_hr (P, H);
    b_ih, b_hh (4H,) or None.  Returns ``y (T, B, P), hT (B, P), cT (B, H), cache``.  The
    projection is one more packed product inside each step; the threads split the batch
    (the projection needs a whole row's units), so a batch of one runs on one thread."""
    x, dtype, out_dtype = _prepare_x(x)
    T, B, I = x.shape
    w_hr = _float_array("w_hr", w_hr)
    if w_hr.ndim != 2 or min(w_hr.shape) < 1:
        raise ValueError(f"w_hr must have shape (P, H) with P, H >= 1, got {w_hr.shape}")
    P, H = w_hr.shape
    if P >= H:
        raise ValueError(f"w_hr must project to fewer units than it reads (P < H, as "
                         f"torch's proj_size < hidden_size), got shape {w_hr.shape}")
    w_ih = _ready("w_ih", w_ih, (4 * H, I), "(4*H, I)", dtype, optional=False)
    w_hh = _ready("w_hh", w_hh, (4 * H, P), "(4*H, P)", dtype, optional=False)
    w_hr = _c_array(w_hr, dtype=dtype)
    b_ih = _ready("b_ih", b_ih, (4 * H,), "(4*H,)", dtype)
    b_hh = _ready("b_hh", b_hh, (4 * H,), "(4*H,)", dtype)
    h0 = _ready("h0", h0, (B, P), "(B, P)", dtype)
    c0 = _ready("c0", c0, (B, H), "(B, H)", dtype)
    x, lengths, reverse, training = _prepare_run(x, dtype, lengths, reverse, training)
    if _is_empty(x):
        y = np.zeros((T, B, P), out_dtype)
        hT = np.zeros((B, P), out_dtype) if h0 is None else h0.astype(out_dtype)
        cT = np.zeros((B, H), out_dtype) if c0 is None else c0.astype(out_dtype)
        saved = None
    else:
        with engine_threads() as nthreads:
            y, hT, cT, saved = _lstmp.forward(x, w_ih, w_hh, w_hr, _sum_bias(b_ih, b_hh), h0,
                                              c0, lengths, reverse, training, nthreads)
        y, hT, cT = _cast(out_dtype, y, hT, cT)
    cache = Cache("projection_lstm", w_hr, x, w_ih, w_hh, lengths, reverse, saved,
                  b_ih is not None, b_hh is not None, out_dtype) if training else None
    return y, hT, cT, cache


def projection_lstm_backward(dy, dhT, dcT, cache, *, clip_hidden_grad=None):
    """Gradients of a projection_lstm_forward call: dy (T, B, P), dhT (B, P), dcT (B, H),
    each may be None; ``clip_hidden_grad`` as in lstm_backward.

    Returns ``ProjectionLSTMGrads(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr)``."""
    clip = _clip_arg(clip_hidden_grad)
    _check_cache(cache, "projection_lstm")
    w_hr = cache.variant
    T, B, _ = cache.x.shape
    P, H = w_hr.shape
    dy = _ready("dy", dy, (T, B, P), "(T, B, P)", cache.x.dtype)
    dhT = _ready("dhT", dhT, (B, P), "(B, P)", cache.x.dtype)
    dcT = _ready("dcT", dcT, (B, H), "(B, H)", cache.x.dtype)
    cache.consumed = True
    if _is_empty(cache.x):
        dtype = cache.x.dtype
        dx = np.zeros(cache.x.shape, dtype)
        dh0 = np.zeros((B, P), dtype) if dhT is None else dhT.copy()
        dc0 = np.zeros((B, H), dtype) if dcT is None else dcT.copy()
        dw_ih, dw_hh, dw_hr = (np.zeros_like(a) for a in (cache.w_ih, cache.w_hh, w_hr))
        db = np.zeros(4 * H, dtype)
    else:
        with engine_threads() as nthreads:
            dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db = _lstmp.backward(
                dy, dhT, dcT, cache.x, cache.w_ih, cache.w_hh, w_hr, cache.lengths,
                cache.reverse, cache.saved, True, nthreads, clip)
    _recycle(cache)
    db_ih, db_hh = _bias_grads(cache, db, None if db is None else db.copy())
    return ProjectionLSTMGrads(*_cast(cache.out_dtype, dx, dh0, dc0, dw_ih, dw_hh, db_ih,
                                      db_hh, dw_hr))


# ----------------------------------------------------------------------------------------
# GRU

def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, reset_after=True, lengths=None,
                reverse=False, training=True, recurrent_mask=None, zoneout_h=None):
    """GRU over a sequence (gate blocks r|z|n), ``h' = (1-z)*n + z*h`` with
    ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))`` when reset_after (PyTorch, Keras default)
    or ``n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)`` otherwise (Cho et al. 2014).

    x (T, B, I); h0 (B, H) or None; w_ih (3H, I); w_hh (3H, H); b_ih, b_hh (3H,) or None.
    Returns ``y (T, B, H), hT (B, H), cache``.

    ``recurrent_mask`` and ``zoneout_h`` as in ``lstm_forward`` (reset_after=True only; the
    mask multiplies h in every recurrent product, the blend h' = n + z*(h - n) uses h).
    """
    reset_after = _check_flag("reset_after", reset_after)
    if recurrent_mask is not None or zoneout_h is not None:
        _variant_gru_check(reset_after, "recurrent_mask and zoneout_h")
        y, (hT,), cache = _variant_forward(
            "gru", "gru", x, [("h0", h0)], w_ih, w_hh, b_ih, b_hh, None, 1e-5,
            recurrent_mask, zoneout_h, None, lengths, reverse, training)
        return y, hT, cache
    x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, reverse, training, out_dtype = \
        _prepare_forward(3, x, [("h0", h0)], w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                         training)
    if _is_empty(x):
        y, (hT,) = _empty_forward(x, [h0], w_hh.shape[1], out_dtype)
        saved = None
    else:
        H = w_hh.shape[1]
        b_hn = None
        if reset_after and b_hh is not None:
            # b_hn stays inside r * (W_hn h + b_hn); b_hr, b_hz join the input side
            b_hn = _c_array(b_hh[2 * H:])
            b_hh = np.concatenate([b_hh[:2 * H], np.zeros(H, b_hh.dtype)])
        with engine_threads() as nthreads:
            nthreads, by_rows = _plan(x, w_hh, nthreads)
            y, hT, saved = _gru.forward(x, w_ih, w_hh, _sum_bias(b_ih, b_hh), b_hn, h0,
                                        lengths, reverse, training, reset_after, nthreads,
                                        by_rows, _fuse_input(w_ih, w_hh, x.shape[1],
                                                             small=False))
        y, hT = _cast(out_dtype, y, hT)
    cache = Cache("gru", reset_after, x, w_ih, w_hh, lengths, reverse, saved,
                  b_ih is not None, b_hh is not None, out_dtype) if training else None
    return y, hT, cache


def gru_backward(dy, dhT, cache, *, clip_hidden_grad=None):
    """Gradients of a gru_forward call.  dy (T, B, H) or None; dhT (B, H) or None.

    Returns ``GRUGrads(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``.
    ``clip_hidden_grad`` (a positive number, optional) clamps the gradient carried back
    through the recurrence to [-c, c] at every step (the gradient arriving at h_t from the
    later steps, dhT included, before dy_t is added): the results are then not the exact
    gradient, by design.
    """
    if isinstance(cache, Cache) and isinstance(cache.variant, _Variant):
        return GRUGrads(*_variant_backward("gru", cache, [("dy", dy), ("dhT", dhT)],
                                           clip_hidden_grad))
    clip = _clip_arg(clip_hidden_grad)
    dy, dhT = _prepare_backward(cache, "gru", [("dy", dy), ("dhT", dhT)])
    cache.consumed = True
    if _is_empty(cache.x):
        dx, (dh0,), dw_ih, dw_hh = _empty_backward(cache, [dhT])
        db_ih = np.zeros(cache.w_hh.shape[0], cache.x.dtype)
        db_hh = db_ih.copy()
    else:
        with engine_threads() as nthreads:
            nthreads, by_rows = _plan(cache.x, cache.w_hh, nthreads)
            dx, dh0, dw_ih, dw_hh, db_ih, db_hh = _gru.backward(
                dy, dhT, cache.x, cache.w_ih, cache.w_hh, cache.lengths, cache.reverse,
                cache.saved, True, cache.variant, nthreads, clip, by_rows)
    _recycle(cache)
    db_ih, db_hh = _bias_grads(cache, db_ih, db_hh)
    return GRUGrads(*_cast(cache.out_dtype, dx, dh0, dw_ih, dw_hh, db_ih, db_hh))


# ----------------------------------------------------------------------------------------
# LayerNorm cells, and the regularizers inside the recurrence (engine/variants.pyx)

_Variant = namedtuple("_Variant", "cell ln eps rmask zh zc zh_c zc_c")
_LN_LSTM = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_c_weight",
            "ln_c_bias")
_LN_GRU = _LN_LSTM[:4]


def layernorm_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_ih_bias,
                           ln_hh_weight, ln_hh_bias, ln_c_weight, ln_c_bias, *, eps=1e-5,
                           lengths=None, reverse=False, training=True, recurrent_mask=None,
                           zoneout_h=None, zoneout_c=None):
    """LayerNorm LSTM (Ba et al. 2016, as haste's LayerNormLSTM): the input and the
    recurrent projections are normalized separately over each row's 4H gates, and the new
    cell state before the output tanh:

        a = LN(W_ih x; ln_ih) + LN(W_hh h; ln_hh) + b_ih + b_hh
        c' = f*c + i*g,   h' = o * tanh(LN(c'; ln_c))

    with ``LN(v; g, b) = (v - mean(v)) / sqrt(var(v) + eps) * g + b``.  ln_ih_*, ln_hh_*
    are (4H,), ln_c_* (H,).  Other arguments, the regularizers and the results as
    ``lstm_forward``.
    """
    ln = list(zip(_LN_LSTM, (ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias,
                             ln_c_weight, ln_c_bias)))
    y, (hT, cT), cache = _variant_forward(
        "layernorm_lstm", "lstm", x, [("h0", h0), ("c0", c0)], w_ih, w_hh, b_ih, b_hh, ln,
        eps, recurrent_mask, zoneout_h, zoneout_c, lengths, reverse, training)
    return y, hT, cT, cache


def layernorm_lstm_backward(dy, dhT, dcT, cache, *, clip_hidden_grad=None):
    """Gradients of a layernorm_lstm_forward call (arguments as lstm_backward).

    Returns ``LayerNormLSTMGrads``: LSTMGrads' fields plus the six LayerNorm parameters'."""
    return LayerNormLSTMGrads(*_variant_backward(
        "layernorm_lstm", cache, [("dy", dy), ("dhT", dhT), ("dcT", dcT)], clip_hidden_grad))


def layernorm_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, ln_ih_weight, ln_ih_bias,
                          ln_hh_weight, ln_hh_bias, *, eps=1e-5, lengths=None, reverse=False,
                          training=True, recurrent_mask=None, zoneout_h=None):
    """LayerNorm GRU (reset_after form): the input and the recurrent projections normalized
    separately over each row's 3H gates,

        x~ = LN(W_ih x; ln_ih) + b_ih,   h~ = LN(W_hh h; ln_hh) + b_hh
        r = sigmoid(x~_r + h~_r),  z = sigmoid(x~_z + h~_z),  n = tanh(x~_n + r * h~_n)
        h' = (1-z)*n + z*h

    ln_* are (3H,).  Other arguments and results as ``gru_forward``."""
    ln = list(zip(_LN_GRU, (ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias)))
    y, (hT,), cache = _variant_forward(
        "layernorm_gru", "gru", x, [("h0", h0)], w_ih, w_hh, b_ih, b_hh, ln, eps,
        recurrent_mask, zoneout_h, None, lengths, reverse, training)
    return y, hT, cache


def layernorm_gru_backward(dy, dhT, cache, *, clip_hidden_grad=None):
    """Gradients of a layernorm_gru_forward call (arguments as gru_backward).

    Returns ``LayerNormGRUGrads``: GRUGrads' fields plus the four LayerNorm parameters'."""
    return LayerNormGRUGrads(*_variant_backward(
        "layernorm_gru", cache, [("dy", dy), ("dhT", dhT)], clip_hidden_grad))


def _variant_gru_check(reset_after, what):
    if not reset_after:
        raise ValueError(f"{what} need the GRU with reset_after=True (the reset gate applied "
                         f"after the recurrent product); reset_after=False has no such "
                         f"variant here")


def _check_eps(eps, name="eps"):
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real) \
            or not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {eps!r}")
    return float(eps)


def _zoneout_arg(name, value, shape):
    """(uint8 mask or None, evaluation probability) from a zoneout argument."""
    if value is None:
        return None, 0.0
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be a probability in [0, 1) or a (T, B, H) 0/1 "
                             f"array, got {value!r}")
        return None, float(value)
    arr = _as_array(name, value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a probability or a 0/1 array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape (T, B, H) = {shape}, got {arr.shape}")
    if arr.dtype.kind == "b":
        return _c_array(arr).view(np.uint8), 0.0          # bytes, no copy
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must hold only 0/1 values (1: the unit keeps its previous "
                         f"value)")
    return _c_array(arr, dtype=np.uint8), 0.0


def _variant_forward(kind, cell, x, states, w_ih, w_hh, b_ih, b_hh, ln, eps,
                     recurrent_mask, zoneout_h, zoneout_c, lengths, reverse, training):
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell]
    x, states, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training, out_dtype = \
        _prepare_forward(G, x, states, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    eps = _check_eps(eps) if ln is not None else eps
    packed = None
    if ln is not None:
        sizes = {"ln_c_weight": H, "ln_c_bias": H}
        parts = [_ready(name, value, (sizes.get(name, G * H),),
                        "(H,)" if name in sizes else f"({G}*H,)", x.dtype, optional=False)
                 for name, value in ln]
        packed = np.concatenate(parts)
    rmask = _ready("recurrent_mask", recurrent_mask, (B, H), "(B, H)", x.dtype)
    zh, zh_c = _zoneout_arg("zoneout_h", zoneout_h, (T, B, H))
    zc, zc_c = _zoneout_arg("zoneout_c", zoneout_c, (T, B, H))
    variant = _Variant(_variants.CELLS[cell], packed, eps, rmask, zh, zc, zh_c, zc_c)
    if _is_empty(x):
        y, finals = _empty_forward(x, states, H, out_dtype)
        saved = None
    else:
        bias, b_hn = _sum_bias(b_ih, b_hh), None
        if cell == "gru" and b_hh is not None:
            # b_hn stays inside r * (W_hn h + b_hn); b_hr, b_hz join the input side
            b_hn = _c_array(b_hh[2 * H:])
            bias = _sum_bias(b_ih, np.concatenate([b_hh[:2 * H], np.zeros(H, b_hh.dtype)]))
        with engine_threads() as nthreads:
            nthreads, by_rows = _variant_plan(x, w_hh, nthreads, packed)
            y, hT, cT, saved = _variants.forward(
                variant.cell, x, w_ih, w_hh, bias, b_hn, packed, eps, rmask, zh, zc, zh_c,
                zc_c, *(s for s in states), *([None] if len(states) == 1 else []), lengths,
                reverse, training, nthreads, by_rows, _fuse_input(w_ih, w_hh))
        finals = _cast(out_dtype, hT, cT)[:len(states)]
        y, = _cast(out_dtype, y)
    cache = Cache(kind, variant, x, w_ih, w_hh, lengths, reverse, saved, b_ih is not None,
                  b_hh is not None, out_dtype) if training else None
    return y, finals, cache


def _variant_plan(x, w_hh, nthreads, ln):
    """_plan's choice (LayerNorm's extra barriers in the units scheme: see variants.pyx)."""
    return _plan(x, w_hh, nthreads)


def _variant_backward(kind, cache, grads, clip_hidden_grad):
    """The gradient fields of the kind's Grads type, in order."""
    clip = _clip_arg(clip_hidden_grad)
    grads = _prepare_backward(cache, kind, grads)
    cache.consumed = True
    v = cache.variant
    lstm = len(grads) == 3
    if _is_empty(cache.x):
        dx, d0, dw_ih, dw_hh = _empty_backward(cache, grads[1:])
        db_ih = np.zeros(cache.w_hh.shape[0], cache.x.dtype)
        db_hh = db_ih.copy()
        dln = None if v.ln is None else np.zeros_like(v.ln)
    else:
        dy, dhT, dcT = grads + [None] * (3 - len(grads))
        with engine_threads() as nthreads:
            nthreads, by_rows = _variant_plan(cache.x, cache.w_hh, nthreads, v.ln)
            dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dln = _variants.backward(
                v.cell, dy, dhT, dcT, cache.x, cache.w_ih, cache.w_hh, v.ln, v.rmask, v.zh,
                v.zc, v.zh_c, v.zc_c, cache.lengths, cache.reverse, cache.saved, nthreads,
                clip, by_rows)
        d0 = [dh0, dc0] if lstm else [dh0]
    _recycle(cache)
    db_ih, db_hh = _bias_grads(cache, db_ih, db_hh)
    out = [dx, *d0, dw_ih, dw_hh, db_ih, db_hh]
    if dln is not None:
        GH, H = cache.w_hh.shape
        out += [dln[k * GH:(k + 1) * GH] for k in range(4)]
        if lstm:
            out += [dln[4 * GH:4 * GH + H], dln[4 * GH + H:]]
    return _cast(cache.out_dtype, *out)


# ----------------------------------------------------------------------------------------
# Streaming: one time step at a time, with weights packed once

class StepWeights:
    """Weights of one layer packed for the step functions (``prepare_rnn``,
    ``prepare_lstm``, ``prepare_gru``).  Packing reorders W_ih and W_hh into the kernels'
    panel layout once, so each step reads them with unit stride and does no set-up work.
    Holds copies: later changes to the original arrays are not seen (prepare again)."""

    __slots__ = ("kind", "variant", "dtype", "I", "H", "packed", "bias", "b_hn")

    def __init__(self, kind, variant, dtype, I, H, packed, bias, b_hn):
        # read-only, arrays included: the kernels trust these sizes and buffers
        for a in (bias, b_hn, *packed):
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        for name, value in zip(self.__slots__, (kind, variant, dtype, I, H, packed, bias,
                                                b_hn)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"StepWeights are read-only (the kernels trust their sizes); "
                             f"call prepare_{self.kind} again for new weights")

    def __delattr__(self, name):
        self.__setattr__(name, None)

    def __repr__(self):
        variant = {"rnn": lambda v: f" nonlinearity={'relu' if v else 'tanh'}",
                   "gru": lambda v: f" reset_after={v}",
                   "lstm": lambda v: "" if v is None else " peephole"}[self.kind]
        return (f"<fastrnn {self.kind} StepWeights I={self.I} H={self.H} "
                f"dtype={self.dtype}{variant(self.variant)}>")


def _prepare(kind, G, w_ih, w_hh, b_ih, b_hh, dtype, variant):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    w_ih_arr = _float_array("w_ih", w_ih)
    if w_ih_arr.ndim != 2:
        raise ValueError(f"w_ih must be 2-D (G*H, I), got shape {w_ih_arr.shape}")
    I = w_ih_arr.shape[1]
    w_ih, w_hh, b_ih, b_hh, H = _prepare_weights(G, w_ih_arr, w_hh, b_ih, b_hh, I, dtype)
    if kind == "lstm" and variant is not None:          # the peephole weights (a copy)
        variant = np.array(_ready("w_peep", variant, (3 * H,), "(3*H,)", dtype,
                                  optional=False))
        variant.flags.writeable = False
    b_hn = None
    if kind == "gru" and variant and b_hh is not None:
        b_hn = np.array(b_hh[2 * H:])                    # copies: StepWeights own them
        b_hh = np.concatenate([b_hh[:2 * H], np.zeros(H, dtype)])
    bias = _sum_bias(b_ih, b_hh)
    bias = None if bias is None else np.array(bias, order="C")
    if kind == "rnn":
        packed = _rnn.prepare(w_ih, w_hh)
    elif kind == "lstm":
        packed = _lstm.prepare(w_ih, w_hh)
    else:
        packed = _gru.prepare(w_ih, w_hh, variant)
    return StepWeights(kind, variant, dtype, I, H, packed, bias, b_hn)


def prepare_rnn(w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", dtype=np.float32):
    """Pack an Elman RNN layer's weights for ``rnn_step`` (compute dtype `dtype`)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return _prepare("rnn", 1, w_ih, w_hh, b_ih, b_hh, dtype, nonlinearity == "relu")


def prepare_lstm(w_ih, w_hh, b_ih=None, b_hh=None, *, w_peep=None, dtype=np.float32):
    """Pack an LSTM layer's weights for ``lstm_step`` (compute dtype `dtype`); w_peep (3H,)
    adds peephole connections as in ``peephole_lstm_forward``."""
    return _prepare("lstm", 4, w_ih, w_hh, b_ih, b_hh, dtype, w_peep)


def prepare_gru(w_ih, w_hh, b_ih=None, b_hh=None, *, reset_after=True, dtype=np.float32):
    """Pack a GRU layer's weights for ``gru_step`` (compute dtype `dtype`)."""
    return _prepare("gru", 3, w_ih, w_hh, b_ih, b_hh, dtype, _check_flag("reset_after",
                                                                          reset_after))


def _step_weights(kind, weights, prepare, x_dtype):
    if isinstance(weights, StepWeights):
        if weights.kind != kind:
            raise TypeError(f"weights were prepared for {weights.kind}_step, not {kind}_step")
        return weights
    if isinstance(weights, (tuple, list)) and len(weights) in (2, 4):
        w = list(weights) + [None] * (4 - len(weights))
        return prepare(*w, dtype=_compute_dtype(np.empty(0, x_dtype)))
    raise TypeError(f"weights must be a StepWeights from prepare_{kind} or a tuple "
                    f"(w_ih, w_hh[, b_ih, b_hh]), got {type(weights).__name__}")


def _step_inputs(x, states, sw):
    """x (B, I) and states (B, H) in the compute dtype; `single` when x was 1-D (I,).
    x is x_t already checked by _float_array."""
    shape = x.shape
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != sw.I:
        raise ValueError(f"x_t must have shape (B, I) or (I,) with I = {sw.I}, got "
                         f"{shape}")
    B = x.shape[0]
    out = []
    for name, s in states:
        if s is None:
            out.append(np.zeros((B, sw.H), sw.dtype))
            continue
        arr = _float_array(name, s)
        if single and arr.ndim == 1:
            arr = arr[None]
        _check_shape(name, arr, (B, sw.H), "(B, H)" if not single else "(H,)")
        out.append(_c_array(arr, dtype=sw.dtype))
    out_dtype = x.dtype.newbyteorder("=")
    return _c_array(x, dtype=sw.dtype), out, single, out_dtype


def _step_result(arrays, single, out_dtype):
    res = [a.astype(out_dtype, copy=False) for a in arrays]
    return [a[0] for a in res] if single else res


def rnn_step(x_t, h, weights):
    """One Elman RNN step: ``h' = act(W_ih x_t + b_ih + W_hh h + b_hh)``.

    x_t (B, I) or (I,); h (B, H) / (H,) or None (zeros); weights a StepWeights from
    ``prepare_rnn`` (packed once: fast) or a tuple (w_ih, w_hh, b_ih, b_hh) (packed on every
    call; tanh).  Returns h' (same leading shape as x_t, x_t's dtype).  Releases the GIL.
    """
    x = _float_array("x_t", x_t)
    sw = _step_weights("rnn", weights, prepare_rnn, x.dtype)
    x, (h,), single, out_dtype = _step_inputs(x, [("h", h)], sw)
    with engine_threads(blas=False) as nthreads:
        h_new = _rnn.step(x, h, sw.packed, sw.bias, sw.variant, _step_threads(nthreads, sw))
    return _step_result([h_new], single, out_dtype)[0]


def lstm_step(x_t, state, weights):
    """One LSTM step.  x_t (B, I) or (I,); state (h, c) of (B, H) / (H,) arrays, or None
    (zeros); weights a StepWeights from ``prepare_lstm`` or a tuple (w_ih, w_hh, b_ih, b_hh).
    Returns (h', c').  Releases the GIL."""
    if state is None:
        state = (None, None)
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise TypeError(f"state must be a tuple (h, c) or None, got {type(state).__name__}")
    x = _float_array("x_t", x_t)
    sw = _step_weights("lstm", weights, prepare_lstm, x.dtype)
    x, (h, c), single, out_dtype = _step_inputs(x, [("h", state[0]), ("c", state[1])], sw)
    with engine_threads(blas=False) as nthreads:
        h_new, c_new = _lstm.step(x, h, c, sw.packed, sw.bias, _step_threads(nthreads, sw),
                                  sw.variant)
    return tuple(_step_result([h_new, c_new], single, out_dtype))


def gru_step(x_t, h, weights):
    """One GRU step.  x_t (B, I) or (I,); h (B, H) / (H,) or None (zeros); weights a
    StepWeights from ``prepare_gru`` or a tuple (w_ih, w_hh, b_ih, b_hh) (reset_after=True).
    Returns h'.  Releases the GIL."""
    x = _float_array("x_t", x_t)
    sw = _step_weights("gru", weights, prepare_gru, x.dtype)
    x, (h,), single, out_dtype = _step_inputs(x, [("h", h)], sw)
    with engine_threads(blas=False) as nthreads:
        h_new = _gru.step(x, h, sw.packed, sw.bias, sw.b_hn, sw.variant,
                          _step_threads(nthreads, sw))
    return _step_result([h_new], single, out_dtype)[0]


_STEP_PARALLEL_MIN = 1 << 17     # multiply-adds per step below which one thread is faster


def _plan(x, w_hh, nthreads):
    """How a sequence call uses its `nthreads` threads: returns (threads, by_rows).

    Two parallel schemes (see engine/common.pxd), chosen from the call's shape and this machine's
    cache size (read at run time):

    - by rows: each thread takes B/n whole rows through every step, with no barrier (the
      rows of a batch are independent).  But every thread reads the whole recurrent weight
      (G*H x H) every step, so it pays when that weight stays in a core's cache (a quarter
      of its L2, leaving room for the states and gates), or when each thread has enough rows
      to reuse every weight it streams in (2 * rows / itemsize multiply-adds a byte; at least
      8 * itemsize rows, 32 in float32).
    - by hidden units: each thread owns whole blocks of hidden units (their slice of the
      weight stays in its cache) and all rows; the threads meet at a barrier every step,
      which costs about as much as _UNITS_MIN_WORK multiply-adds, so a step with less work
      than that (batch 1, small H) runs on one thread instead.

    Either way each output element is the same dot product in the same order, so the result
    does not depend on the scheme or the thread count."""
    if _force_plan is not None:
        return _force_plan(x, w_hh, nthreads)
    B = x.shape[1]
    if nthreads <= 1:
        return 1, True                # one thread: the rows code path has fewer calls
    weight = w_hh.nbytes
    rows = B // nthreads
    if rows >= 1 and (weight * 4 <= _cpu.l2_cache_bytes() or rows >= 8 * w_hh.itemsize):
        return nthreads, True
    if B * w_hh.shape[0] * w_hh.shape[1] < _UNITS_MIN_WORK and \
            weight * 16 <= _cpu.l2_cache_bytes():
        return 1, False
    return nthreads, False


def _fuse_input(w_ih, w_hh, B=None, small=True):
    """Make the input projection step by step inside the recurrence (packed W_ih beside
    W_hh) instead of as BLAS products over many steps?  It saves a pass over the gates, the
    bias copy, a BLAS call and a parallel region per chunk of steps.  Pays when both weights
    stay in a core's cache together (a quarter of its L2; with `small`), which dominates
    short calls on small layers, or, given the batch B, when a step has enough rows to reuse
    every weight it streams in (B * itemsize >= 256: 64 rows in float32).  Measured on 2
    cores of a Zen 5 (float32, interleaved A/B, 2 threads, quiet machine): at B = 64-256
    fused takes 0.89-0.99 of the time for the LSTM and 0.67-0.97 for the GRU, at B = 1 and
    B = 16 (H = 1024) up to 1.19; small GRU layers gain nothing (-8% to +3% at (50, 8, 32,
    64)), so the GRU fuses by the batch rule only.  Depends on the shapes only, never on the thread count (the two
    ways round differently)."""
    if _force_fused is not None:
        return _force_fused
    if small and (w_ih.nbytes + w_hh.nbytes) * 4 <= _cpu.l2_cache_bytes():
        return True
    return B is not None and B * w_hh.itemsize >= _FUSE_ROW_BYTES


_UNITS_MIN_WORK = 120_000     # multiply-adds per step that outweigh one barrier
_FUSE_ROW_BYTES = 256         # _fuse_input: rows x itemsize that reuse a streamed weight
_force_plan = None            # tests: a function (x, w_hh, nthreads) -> (threads, by_rows)
_force_fused = None           # tests: True / False instead of _fuse_input's choice


def _step_threads(nthreads, sw):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[sw.kind]
    return nthreads if G * sw.H * (sw.I + sw.H) >= _STEP_PARALLEL_MIN else 1
