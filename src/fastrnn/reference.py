"""Plain NumPy reference implementation of the recurrent cells, forward and backward.

This module is the test oracle for the fast Cython kernels, the "NumPy reference" in the
benchmarks, and readable documentation of the math.  It uses the usual batched-GEMM
structure:

* forward: ONE GEMM for all input projections, ``x.reshape(T*B, I) @ w_ih.T``, then per time
  step one GEMM with the recurrent weights (``h @ w_hh.T``) followed by elementwise ops;
* backward: a reverse loop that does one GEMM per step (``d_gates @ w_hh``) to push the
  gradient to the previous hidden state, then a few large GEMMs after the loop for
  ``dw_ih``, ``dw_hh`` and ``dx``.

(The GRU with ``reset_after=False`` needs two GEMMs per step, because the reset gate is
applied to ``h`` *before* the candidate's recurrent matrix product.)

Conventions (PyTorch-compatible)
--------------------------------
* ``x`` is time-major, shape ``(T, B, I)``; states ``h0``/``c0`` and the returned final
  states have shape ``(B, H)``.  ``h0``/``c0`` may be ``None`` (zeros).
* ``w_ih`` is ``(G*H, I)``, ``w_hh`` is ``(G*H, H)``, ``b_ih``/``b_hh`` are ``(G*H,)``; the
  ``G`` gate blocks are stacked along the rows, in PyTorch's order:

  ===========  ===  ============
  cell         G    gate blocks
  ===========  ===  ============
  Elman RNN    1    (single)
  LSTM         4    i | f | g | o
  GRU          3    r | z | n
  ===========  ===  ============

  Either bias may be ``None`` (absent); the matching bias gradient is then ``None`` too.
* All arithmetic is done in the dtype of ``x`` (float32 or float64); the weights are cast
  to it.

Cell equations (``s = sigmoid``; ``x_k = W_ik x + b_ik``; ``h_k = W_hk h + b_hk``)
----------------------------------------------------------------------------------
* Elman: ``h' = act(x_1 + h_1)`` with ``act`` = ``tanh`` or ``relu``.
* LSTM: ``i = s(x_i + h_i)``, ``f = s(x_f + h_f)``, ``g = tanh(x_g + h_g)``,
  ``o = s(x_o + h_o)``; ``c' = f*c + i*g``; ``h' = o*tanh(c')``.
* GRU: ``r = s(x_r + h_r)``, ``z = s(x_z + h_z)``;
  ``reset_after=True`` (PyTorch, cuDNN): ``n = tanh(x_n + r*(W_hn h + b_hn))``;
  ``reset_after=False`` (Cho et al. 2014, Keras ``reset_after=False``):
  ``n = tanh(x_n + W_hn (r*h) + b_hn)``; in both cases ``h' = (1-z)*n + z*h``.

Variable lengths and direction
------------------------------
``lengths`` (optional, shape ``(B,)``, each value in ``1..T``) gives PyTorch packed-sequence
semantics.  The steps are visited in order ``t = 0..T-1`` (or ``T-1..0`` when
``reverse=True``), and row ``b`` is *active* at step ``t`` iff ``t < lengths[b]``.  An
inactive row keeps its state unchanged and outputs ``y[t, b] = 0``.  Consequently:

* forward direction: the final state of row ``b`` is its state after step ``lengths[b]-1``;
* reverse direction: row ``b``'s recurrence starts from ``h0`` at ``t = lengths[b]-1`` (not
  at ``T-1``), runs down to ``t = 0``, and its final state is the state after ``t = 0``.

In the backward pass, ``dy`` at inactive positions is ignored (the output there is the
constant 0), and the state gradients pass unchanged through inactive steps.

API
---
``*_forward`` returns the outputs, the final state(s) and a ``cache`` (a dict of arrays the
backward pass needs).  The cache holds a reference to the returned ``y``: do not modify
``y`` in place if you are going to call the backward function.  The forward functions are
complete on their own (inference); calling backward is optional.

``*_backward`` takes the upstream gradients (each may be ``None``, meaning zeros) and the
cache, and returns an :class:`~fastrnn._results.RNNGrads`, :class:`~fastrnn._results.GRUGrads`
or :class:`~fastrnn._results.LSTMGrads`.  ``dh0`` (and ``dc0``) are always returned, even
when the forward's ``h0`` (``c0``) was ``None``.
"""
import numpy as np

from fastrnn._results import (GRUGrads, LSTMGrads, PeepholeLSTMGrads, ProjectionLSTMGrads,
                              RNNGrads)

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "lstm_forward",
    "lstm_backward",
    "peephole_lstm_forward",
    "peephole_lstm_backward",
    "projection_lstm_forward",
    "projection_lstm_backward",
    "gru_forward",
    "gru_backward",
    "variant_forward",
]


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def _sigmoid(a):
    # exp(-a) overflows to inf for very negative a; 1/(1+inf) = 0 is the right answer.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-a))


def _prepare(x, w_ih, w_hh, b_ih, b_hh, n_gates):
    """Convert the inputs to arrays of one floating dtype and check their shapes.

    Returns ``x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H)``.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    dtype = x.dtype
    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, I), got {x.shape}")
    T, B, I = x.shape
    w_ih = np.asarray(w_ih, dtype=dtype)
    w_hh = np.asarray(w_hh, dtype=dtype)
    if w_hh.ndim != 2 or w_hh.shape[0] != n_gates * w_hh.shape[1]:
        raise ValueError(f"w_hh must have shape ({n_gates}*H, H), got {w_hh.shape}")
    H = w_hh.shape[1]
    if w_ih.shape != (n_gates * H, I):
        raise ValueError(f"w_ih must have shape ({n_gates * H}, {I}), got {w_ih.shape}")
    biases = []
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            b = np.asarray(b, dtype=dtype)
            if b.shape != (n_gates * H,):
                raise ValueError(f"{name} must have shape ({n_gates * H},), got {b.shape}")
        biases.append(b)
    return x, w_ih, w_hh, biases[0], biases[1], (T, B, I, H)


def _initial_state(s0, B, H, dtype, name):
    """A fresh (B, H) array holding the initial state (zeros when ``s0`` is None)."""
    if s0 is None:
        return np.zeros((B, H), dtype=dtype)
    s = np.array(s0, dtype=dtype)  # a copy: the caller's array is never modified
    if s.shape != (B, H):
        raise ValueError(f"{name} must have shape ({B}, {H}), got {s.shape}")
    return s


def _active_mask(lengths, T, B):
    """Boolean array (T, B, 1): is row b active at step t?  None when every row is full."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be an integer array of shape ({B},)")
    if B and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"lengths must lie in 1..{T}")
    if np.all(lengths == T):
        return None
    return (np.arange(T)[:, None] < lengths[None, :])[:, :, None]


def _steps(T, reverse):
    """The time steps in processing order."""
    return range(T - 1, -1, -1) if reverse else range(T)


def _input_projection(x, w_ih, bias):
    """All input projections with one GEMM: (T, B, I) -> (T, B, G*H), plus ``bias``."""
    T, B, I = x.shape
    xp = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, w_ih.shape[0])
    if bias is not None:
        xp += bias
    return xp


def _add_biases(b_ih, b_hh):
    """b_ih + b_hh, where None means absent (for the cells where both sit side by side)."""
    if b_ih is None:
        return b_hh
    if b_hh is None:
        return b_ih
    return b_ih + b_hh


def _outer_sum(d, v):
    """sum over (t, b) of outer(d[t, b], v[t, b]): one GEMM, (T, B, M), (T, B, N) -> (M, N)."""
    return d.reshape(-1, d.shape[-1]).T @ v.reshape(-1, v.shape[-1])


def _input_grads(d_x, x, w_ih, has_b_ih):
    """dx, dw_ih, db_ih from the gradients d_x (T, B, G*H) of the input pre-activations."""
    T, B, I = x.shape
    dx = (d_x.reshape(T * B, w_ih.shape[0]) @ w_ih).reshape(T, B, I)
    dw_ih = _outer_sum(d_x, x)
    db_ih = d_x.sum(axis=(0, 1)) if has_b_ih else None
    return dx, dw_ih, db_ih


def _upstream(g, shape, dtype):
    """Upstream gradient as an array, or None (meaning zeros)."""
    if g is None:
        return None
    g = np.asarray(g, dtype=dtype)
    if g.shape != shape:
        raise ValueError(f"gradient must have shape {shape}, got {g.shape}")
    return g


def _keep_inactive(active_t, new, old):
    """Rows active at this step take ``new``, the others keep ``old``."""
    return new if active_t is None else np.where(active_t, new, old)


def _zero_inactive(active_t, a):
    return a if active_t is None else np.where(active_t, a, 0)


# ---------------------------------------------------------------------------------------
# Elman RNN
# ---------------------------------------------------------------------------------------

def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", lengths=None,
                reverse=False):
    """Elman RNN layer: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Returns ``(y, hT, cache)``: y (T, B, H), hT (B, H).
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _prepare(x, w_ih, w_hh, b_ih, b_hh, 1)
    h = _initial_state(h0, B, H, x.dtype, "h0")
    active = _active_mask(lengths, T, B)
    # Both biases are added outside the recurrence, so fold them into the projection.
    xp = _input_projection(x, w_ih, _add_biases(b_ih, b_hh))

    y = np.zeros((T, B, H), dtype=x.dtype)
    h_in = np.empty((T, B, H), dtype=x.dtype)  # the state entering each step
    for t in _steps(T, reverse):
        act_t = None if active is None else active[t]
        h_in[t] = h
        a = xp[t] + h @ w_hh.T
        h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
        y[t] = _zero_inactive(act_t, h_new)
        h = _keep_inactive(act_t, h_new, h)

    cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, has_b_ih=b_ih is not None,
                 has_b_hh=b_hh is not None, nonlinearity=nonlinearity, active=active,
                 reverse=reverse, h_in=h_in, y=y)
    return y, h, cache


def rnn_backward(dy, dhT, cache, clip_hidden_grad=None):
    """Gradients of an Elman RNN layer; returns :class:`RNNGrads`."""
    x, w_ih, w_hh, active, y = (cache[k] for k in ("x", "w_ih", "w_hh", "active", "y"))
    T, B, H = y.shape
    dy = _upstream(dy, (T, B, H), x.dtype)
    dhT = _upstream(dhT, (B, H), x.dtype)
    dh = np.zeros((B, H), dtype=x.dtype) if dhT is None else dhT.copy()

    d_a = np.empty((T, B, H), dtype=x.dtype)  # gradient of the pre-activations
    for t in reversed(_steps(T, cache["reverse"])):
        if clip_hidden_grad is not None:     # the carried gradient, clamped every step
            dh = np.clip(dh, -clip_hidden_grad, clip_hidden_grad)
        act_t = None if active is None else active[t]
        g = dh if dy is None else dh + dy[t]
        # y[t] equals the new state on the active rows; the others are zeroed below.
        if cache["nonlinearity"] == "tanh":
            da = g * (1 - y[t] * y[t])
        else:
            da = g * (y[t] > 0)
        da = _zero_inactive(act_t, da)
        d_a[t] = da
        dh = _keep_inactive(act_t, da @ w_hh, dh)

    dx, dw_ih, db_ih = _input_grads(d_a, x, w_ih, cache["has_b_ih"])
    dw_hh = _outer_sum(d_a, cache["h_in"])
    db_hh = d_a.sum(axis=(0, 1)) if cache["has_b_hh"] else None
    return RNNGrads(dx, dh, dw_ih, dw_hh, db_ih, db_hh)


# ---------------------------------------------------------------------------------------
# LSTM
# ---------------------------------------------------------------------------------------

def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
    """LSTM layer (gate blocks i|f|g|o).

    Returns ``(y, hT, cT, cache)``: y (T, B, H), hT and cT (B, H).
    """
    return _lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, lengths, reverse)


def peephole_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, lengths=None,
                          reverse=False):
    """LSTM with diagonal peepholes (Gers & Schmidhuber 2000): w_peep (3H,) = p_i|p_f|p_o,
    ``i = sigmoid(. + p_i*c)``, ``f = sigmoid(. + p_f*c)``, ``o = sigmoid(. + p_o*c')``.

    Returns ``(y, hT, cT, cache)`` as lstm_forward.
    """
    return _lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, lengths, reverse)


def _lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, lengths, reverse):
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _prepare(x, w_ih, w_hh, b_ih, b_hh, 4)
    if w_peep is not None:
        w_peep = np.asarray(w_peep, dtype=x.dtype)
        if w_peep.shape != (3 * H,):
            raise ValueError(f"w_peep must have shape (3*H,) = ({3 * H},), got {w_peep.shape}")
        p_i, p_f, p_o = w_peep[:H], w_peep[H:2 * H], w_peep[2 * H:]
    h = _initial_state(h0, B, H, x.dtype, "h0")
    c = _initial_state(c0, B, H, x.dtype, "c0")
    active = _active_mask(lengths, T, B)
    xp = _input_projection(x, w_ih, _add_biases(b_ih, b_hh))

    y = np.zeros((T, B, H), dtype=x.dtype)
    h_in = np.empty((T, B, H), dtype=x.dtype)
    c_in = np.empty((T, B, H), dtype=x.dtype)
    gates = np.empty((T, B, 4 * H), dtype=x.dtype)  # activated gates i|f|g|o
    tanh_c = np.empty((T, B, H), dtype=x.dtype)      # tanh of the new cell state
    c_out = np.empty((T, B, H), dtype=x.dtype)       # the new cell state
    for t in _steps(T, reverse):
        act_t = None if active is None else active[t]
        h_in[t] = h
        c_in[t] = c
        a = xp[t] + h @ w_hh.T
        if w_peep is not None:
            a[:, :H] += p_i * c
            a[:, H:2 * H] += p_f * c
        i = _sigmoid(a[:, :H])
        f = _sigmoid(a[:, H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        c_new = f * c + i * g
        if w_peep is not None:
            a[:, 3 * H:] += p_o * c_new
        o = _sigmoid(a[:, 3 * H:])
        tc = np.tanh(c_new)
        h_new = o * tc
        gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:3 * H], gates[t, :, 3 * H:] = (
            i, f, g, o)
        tanh_c[t] = tc
        c_out[t] = c_new
        y[t] = _zero_inactive(act_t, h_new)
        h = _keep_inactive(act_t, h_new, h)
        c = _keep_inactive(act_t, c_new, c)

    cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, has_b_ih=b_ih is not None,
                 has_b_hh=b_hh is not None, active=active, reverse=reverse, h_in=h_in,
                 c_in=c_in, gates=gates, tanh_c=tanh_c, w_peep=w_peep, c_out=c_out)
    return y, h, c, cache


def lstm_backward(dy, dhT, dcT, cache, clip_hidden_grad=None):
    """Gradients of an LSTM layer; returns :class:`LSTMGrads`."""
    if cache.get("w_peep") is not None:
        raise ValueError("cache comes from peephole_lstm_forward: use peephole_lstm_backward")
    return LSTMGrads(*_lstm_backward(dy, dhT, dcT, cache, clip_hidden_grad)[:7])


def peephole_lstm_backward(dy, dhT, dcT, cache, clip_hidden_grad=None):
    """Gradients of a peephole LSTM layer; returns :class:`PeepholeLSTMGrads`."""
    if cache.get("w_peep") is None:
        raise ValueError("cache comes from lstm_forward: use lstm_backward")
    return PeepholeLSTMGrads(*_lstm_backward(dy, dhT, dcT, cache, clip_hidden_grad))


def _lstm_backward(dy, dhT, dcT, cache, clip_hidden_grad):
    x, w_ih, w_hh, active, gates = (cache[k] for k in ("x", "w_ih", "w_hh", "active", "gates"))
    w_peep = cache["w_peep"]
    c_in, tanh_c = cache["c_in"], cache["tanh_c"]
    T, B, H = c_in.shape
    dy = _upstream(dy, (T, B, H), x.dtype)
    dhT = _upstream(dhT, (B, H), x.dtype)
    dcT = _upstream(dcT, (B, H), x.dtype)
    dh = np.zeros((B, H), dtype=x.dtype) if dhT is None else dhT.copy()
    dc = np.zeros((B, H), dtype=x.dtype) if dcT is None else dcT.copy()

    d_a = np.empty((T, B, 4 * H), dtype=x.dtype)  # gradient of the gate pre-activations
    for t in reversed(_steps(T, cache["reverse"])):
        if clip_hidden_grad is not None:     # the carried gradient, clamped every step
            dh = np.clip(dh, -clip_hidden_grad, clip_hidden_grad)
        act_t = None if active is None else active[t]
        i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        tc = tanh_c[t]
        d_h = dh if dy is None else dh + dy[t]
        da = np.empty((B, 4 * H), dtype=x.dtype)
        da[:, 3 * H:] = d_h * tc * o * (1 - o)
        # total gradient of the new cell state: from c' directly and through h' = o*tanh(c')
        # (and, with peepholes, through the o gate's p_o*c')
        d_c = dc + d_h * o * (1 - tc * tc)
        if w_peep is not None:
            d_c = d_c + da[:, 3 * H:] * w_peep[2 * H:]
        da[:, :H] = d_c * g * i * (1 - i)
        da[:, H:2 * H] = d_c * c_in[t] * f * (1 - f)
        da[:, 2 * H:3 * H] = d_c * i * (1 - g * g)
        da = _zero_inactive(act_t, da)
        d_a[t] = da
        dh = _keep_inactive(act_t, da @ w_hh, dh)
        dc_prev = d_c * f
        if w_peep is not None:
            dc_prev = dc_prev + da[:, :H] * w_peep[:H] + da[:, H:2 * H] * w_peep[H:2 * H]
        dc = _keep_inactive(act_t, dc_prev, dc)

    dx, dw_ih, db_ih = _input_grads(d_a, x, w_ih, cache["has_b_ih"])
    dw_hh = _outer_sum(d_a, cache["h_in"])
    db_hh = d_a.sum(axis=(0, 1)) if cache["has_b_hh"] else None
    dw_peep = None
    if w_peep is not None:
        c_out = cache["c_out"]                 # c_t, the cell state each step made
        dw_peep = np.concatenate([(d_a[..., :H] * c_in).sum(axis=(0, 1)),
                                  (d_a[..., H:2 * H] * c_in).sum(axis=(0, 1)),
                                  (d_a[..., 3 * H:] * c_out).sum(axis=(0, 1))])
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dw_peep


def projection_lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths=None,
                            reverse=False):
    """Projection LSTM (PyTorch's proj_size): w_hh (4H, P), w_hr (P, H); the cell as the
    LSTM with m = o*tanh(c') (H wide) and h' = W_hr m (P wide).  h0 (B, P), c0 (B, H).

    Returns ``(y (T, B, P), hT (B, P), cT (B, H), cache)``."""
    x = np.asarray(x)
    dtype = np.result_type(x.dtype, np.float32)
    x = x.astype(dtype)
    w_ih, w_hh, w_hr = (np.asarray(a, dtype) for a in (w_ih, w_hh, w_hr))
    b = _add_biases(None if b_ih is None else np.asarray(b_ih, dtype),
                    None if b_hh is None else np.asarray(b_hh, dtype))
    T, B, _ = x.shape
    P, H = w_hr.shape
    h = np.zeros((B, P), dtype) if h0 is None else np.asarray(h0, dtype)
    c = np.zeros((B, H), dtype) if c0 is None else np.asarray(c0, dtype)
    active = _active_mask(lengths, T, B)
    xp = _input_projection(x, w_ih, b)
    y = np.zeros((T, B, P), dtype)
    keep = dict(h_in=np.empty((T, B, P), dtype), c_in=np.empty((T, B, H), dtype),
                gates=np.empty((T, B, 4 * H), dtype), tanh_c=np.empty((T, B, H), dtype),
                m=np.empty((T, B, H), dtype))
    for t in _steps(T, reverse):
        act_t = None if active is None else active[t]
        keep["h_in"][t], keep["c_in"][t] = h, c
        a = xp[t] + h @ w_hh.T
        i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H])
        g, o = np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        m = o * tc
        h_new = m @ w_hr.T
        keep["gates"][t] = np.concatenate([i, f, g, o], axis=1)
        keep["tanh_c"][t], keep["m"][t] = tc, m
        y[t] = _zero_inactive(act_t, h_new)
        h = _keep_inactive(act_t, h_new, h)
        c = _keep_inactive(act_t, c_new, c)
    cache = dict(keep, x=x, w_ih=w_ih, w_hh=w_hh, w_hr=w_hr, active=active, reverse=reverse,
                 has_b_ih=b_ih is not None, has_b_hh=b_hh is not None)
    return y, h, c, cache


def projection_lstm_backward(dy, dhT, dcT, cache, clip_hidden_grad=None):
    """Gradients of a projection LSTM layer; returns :class:`ProjectionLSTMGrads`."""
    x, w_ih, w_hh, w_hr, active = (cache[k] for k in ("x", "w_ih", "w_hh", "w_hr", "active"))
    gates, c_in, tanh_c, m_all = cache["gates"], cache["c_in"], cache["tanh_c"], cache["m"]
    T, B, H = c_in.shape
    P = w_hr.shape[0]
    dy = _upstream(dy, (T, B, P), x.dtype)
    dh = np.zeros((B, P), x.dtype) if dhT is None else np.array(dhT, x.dtype)
    dc = np.zeros((B, H), x.dtype) if dcT is None else np.array(dcT, x.dtype)
    d_a = np.zeros((T, B, 4 * H), x.dtype)
    dw_hr = np.zeros_like(w_hr)
    for t in reversed(_steps(T, cache["reverse"])):
        if clip_hidden_grad is not None:
            dh = np.clip(dh, -clip_hidden_grad, clip_hidden_grad)
        act_t = None if active is None else active[t]
        d_h = dh if dy is None else dh + dy[t]
        d_h = _zero_inactive(act_t, d_h)
        dw_hr += d_h.T @ m_all[t]
        dm = d_h @ w_hr
        i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        tc = tanh_c[t]
        d_c = dc + dm * o * (1 - tc * tc)
        da = np.empty((B, 4 * H), x.dtype)
        da[:, :H] = d_c * g * i * (1 - i)
        da[:, H:2 * H] = d_c * c_in[t] * f * (1 - f)
        da[:, 2 * H:3 * H] = d_c * i * (1 - g * g)
        da[:, 3 * H:] = dm * tc * o * (1 - o)
        da = _zero_inactive(act_t, da)
        d_a[t] = da
        dh = _keep_inactive(act_t, da @ w_hh, dh)
        dc = _keep_inactive(act_t, d_c * f, dc)
    dx, dw_ih, db_ih = _input_grads(d_a, x, w_ih, cache["has_b_ih"])
    dw_hh = _outer_sum(d_a, cache["h_in"])
    db_hh = d_a.sum(axis=(0, 1)) if cache["has_b_hh"] else None
    return ProjectionLSTMGrads(dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh, dw_hr)


# ---------------------------------------------------------------------------------------
# GRU
# ---------------------------------------------------------------------------------------

def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=True, lengths=None,
                reverse=False):
    """GRU layer (gate blocks r|z|n).

    ``reset_after=True`` is PyTorch's GRU, ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``;
    ``reset_after=False`` is the original (Cho et al. 2014) form,
    ``n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)``.

    Returns ``(y, hT, cache)``: y (T, B, H), hT (B, H).
    """
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _prepare(x, w_ih, w_hh, b_ih, b_hh, 3)
    h = _initial_state(h0, B, H, x.dtype, "h0")
    active = _active_mask(lengths, T, B)
    if reset_after:
        # b_hn sits inside r*(...), so only b_ih can be folded into the projection.
        xp = _input_projection(x, w_ih, b_ih)
    else:
        # r multiplies h before W_hn, so all of b_hh is outside the product: fold both.
        xp = _input_projection(x, w_ih, _add_biases(b_ih, b_hh))
        w_hrz, w_hn = w_hh[:2 * H], w_hh[2 * H:]

    y = np.zeros((T, B, H), dtype=x.dtype)
    h_in = np.empty((T, B, H), dtype=x.dtype)
    gates = np.empty((T, B, 3 * H), dtype=x.dtype)  # activated gates r|z|n
    # reset_after: W_hn h + b_hn (needed for dr); otherwise r*h (needed for dw_hn).
    aux = np.empty((T, B, H), dtype=x.dtype)
    for t in _steps(T, reverse):
        act_t = None if active is None else active[t]
        h_in[t] = h
        xr, xz, xn = xp[t, :, :H], xp[t, :, H:2 * H], xp[t, :, 2 * H:]
        if reset_after:
            hp = h @ w_hh.T
            if b_hh is not None:
                hp += b_hh
            r = _sigmoid(xr + hp[:, :H])
            z = _sigmoid(xz + hp[:, H:2 * H])
            hn = hp[:, 2 * H:]
            n = np.tanh(xn + r * hn)
            aux[t] = hn
        else:
            hp = h @ w_hrz.T
            r = _sigmoid(xr + hp[:, :H])
            z = _sigmoid(xz + hp[:, H:])
            rh = r * h
            n = np.tanh(xn + rh @ w_hn.T)
            aux[t] = rh
        h_new = (1 - z) * n + z * h
        gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:] = r, z, n
        y[t] = _zero_inactive(act_t, h_new)
        h = _keep_inactive(act_t, h_new, h)

    cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, has_b_ih=b_ih is not None,
                 has_b_hh=b_hh is not None, reset_after=bool(reset_after), active=active,
                 reverse=reverse, h_in=h_in, gates=gates, aux=aux)
    return y, h, cache


def gru_backward(dy, dhT, cache, clip_hidden_grad=None):
    """Gradients of a GRU layer; returns :class:`GRUGrads`."""
    x, w_ih, w_hh, active, gates = (cache[k] for k in ("x", "w_ih", "w_hh", "active", "gates"))
    h_in, aux, reset_after = cache["h_in"], cache["aux"], cache["reset_after"]
    T, B, H = h_in.shape
    dy = _upstream(dy, (T, B, H), x.dtype)
    dhT = _upstream(dhT, (B, H), x.dtype)
    dh = np.zeros((B, H), dtype=x.dtype) if dhT is None else dhT.copy()
    w_hrz, w_hn = w_hh[:2 * H], w_hh[2 * H:]

    # Gradients of the input-side pre-activations (W_i* x + b_i*) ...
    d_x = np.empty((T, B, 3 * H), dtype=x.dtype)
    # ... and of the hidden-side ones (W_h* h + b_h*, or W_hn (r*h) + b_hn for the n block
    # when reset_after=False).  They differ only in the n block, and only when reset_after.
    d_h = np.empty((T, B, 3 * H), dtype=x.dtype) if reset_after else d_x
    for t in reversed(_steps(T, cache["reverse"])):
        if clip_hidden_grad is not None:     # the carried gradient, clamped every step
            dh = np.clip(dh, -clip_hidden_grad, clip_hidden_grad)
        act_t = None if active is None else active[t]
        r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
        h = h_in[t]
        g = dh if dy is None else dh + dy[t]
        # h' = (1-z)*n + z*h
        dan = g * (1 - z) * (1 - n * n)          # through n = tanh(...)
        daz = g * (h - n) * z * (1 - z)          # through z = sigmoid(...)
        dh_prev = g * z                          # direct path
        if reset_after:
            # n's pre-activation is x_n + r * aux, aux = W_hn h + b_hn
            dar = dan * aux[t] * r * (1 - r)
            d_x[t] = _zero_inactive(act_t, np.concatenate([dar, daz, dan], axis=1))
            d_h[t] = _zero_inactive(act_t, np.concatenate([dar, daz, dan * r], axis=1))
            dh_prev = dh_prev + d_h[t] @ w_hh
        else:
            # n's pre-activation is x_n + W_hn (r*h) + b_hn
            d_rh = dan @ w_hn
            dar = d_rh * h * r * (1 - r)
            d_x[t] = _zero_inactive(act_t, np.concatenate([dar, daz, dan], axis=1))
            dh_prev = dh_prev + d_rh * r + d_x[t, :, :2 * H] @ w_hrz
        dh = _keep_inactive(act_t, dh_prev, dh)

    dx, dw_ih, db_ih = _input_grads(d_x, x, w_ih, cache["has_b_ih"])
    if reset_after:
        dw_hh = _outer_sum(d_h, h_in)
    else:
        dw_hh = np.concatenate([_outer_sum(d_x[:, :, :2 * H], h_in),
                                _outer_sum(d_x[:, :, 2 * H:], aux)], axis=0)
    db_hh = d_h.sum(axis=(0, 1)) if cache["has_b_hh"] else None
    return GRUGrads(dx, dh, dw_ih, dw_hh, db_ih, db_hh)


# ---------------------------------------------------------------------------------------
# LayerNorm cells, recurrent dropout and zoneout (forward only: the kernels' gradients are
# checked against finite differences of this and of the kernels' own forward)
# ---------------------------------------------------------------------------------------

def _layer_norm(v, gain, bias, eps):
    mean = v.mean(axis=-1, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=-1, keepdims=True)
    return (v - mean) / np.sqrt(var + eps) * gain + bias


def _zoned(keep, t, new, old):
    """Zoneout at step t: keep is None, a probability (evaluation) or a (T, B, H) 0/1 array."""
    if keep is None:
        return new
    if np.ndim(keep) == 0:
        return keep * old + (1 - keep) * new
    return np.where(keep[t] != 0, old, new)


def variant_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln=None, eps=1e-5,
                    recurrent_mask=None, zoneout_h=None, zoneout_c=None, lengths=None,
                    reverse=False):
    """The RNN ("rnn_tanh", "rnn_relu"), LSTM ("lstm") or GRU ("gru", reset_after) with
    LayerNorm and the regularizers of fastrnn.functional's lstm_forward / gru_forward /
    layernorm_lstm_forward / layernorm_gru_forward.

    ln: None or the LayerNorm parameters (ln_ih_weight, ln_ih_bias, ln_hh_weight,
    ln_hh_bias[, ln_c_weight, ln_c_bias]); recurrent_mask (B, H) or None; zoneout_h,
    zoneout_c: None, a probability, or a (T, B, H) 0/1 array (1 = keep the old value).
    c0 is ignored except for the LSTM.  Returns ``(y, hT, cT)`` (cT None unless LSTM).
    """
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell]
    x, w_ih, w_hh, b_ih, b_hh, (T, B, I, H) = _prepare(x, w_ih, w_hh, b_ih, b_hh, G)
    dt = x.dtype
    ln = None if ln is None else [np.asarray(a, dtype=dt) for a in ln]
    b_ih = np.zeros(G * H, dt) if b_ih is None else b_ih
    b_hh = np.zeros(G * H, dt) if b_hh is None else b_hh
    h = _initial_state(h0, B, H, dt, "h0")
    c = _initial_state(c0, B, H, dt, "c0") if cell == "lstm" else None
    active = _active_mask(lengths, T, B)
    xp = x @ w_ih.T
    if ln is not None:
        xp = _layer_norm(xp, ln[0], ln[1], eps)
    xp = xp + b_ih
    y = np.zeros((T, B, H), dt)
    for t in _steps(T, reverse):
        act_t = None if active is None else active[t]
        hin = h if recurrent_mask is None else h * recurrent_mask
        hp = hin @ w_hh.T
        if ln is not None:
            hp = _layer_norm(hp, ln[2], ln[3], eps)
        hp = hp + b_hh
        c_new = None
        if cell == "lstm":
            a = xp[t] + hp
            i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H])
            g, o = np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
            c_new = f * c + i * g
            cc = c_new if ln is None else _layer_norm(c_new, ln[4], ln[5], eps)
            h_new = o * np.tanh(cc)
            c_new = _zoned(zoneout_c, t, c_new, c)
        elif cell == "gru":
            r = _sigmoid(xp[t, :, :H] + hp[:, :H])
            z = _sigmoid(xp[t, :, H:2 * H] + hp[:, H:2 * H])
            n = np.tanh(xp[t, :, 2 * H:] + r * hp[:, 2 * H:])
            h_new = (1 - z) * n + z * h
        else:
            a = xp[t] + hp
            h_new = np.tanh(a) if cell == "rnn_tanh" else np.maximum(a, 0)
        h_new = _zoned(zoneout_h, t, h_new, h)
        y[t] = _zero_inactive(act_t, h_new)
        h = _keep_inactive(act_t, h_new, h)
        if c is not None:
            c = _keep_inactive(act_t, c_new, c)
    return y, h, c
