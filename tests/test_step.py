"""Streaming step functions (F.rnn_step / lstm_step / gru_step) with weights packed once by
F.prepare_*: stepping through a sequence equals the sequence forward (kernels and the NumPy
reference), for every cell, variant and dtype; conveniences and bad input."""
import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R

VARIANTS = {  # name -> (kind, gates, prepare/forward keyword arguments)
    "rnn_tanh": ("rnn", 1, {"nonlinearity": "tanh"}),
    "rnn_relu": ("rnn", 1, {"nonlinearity": "relu"}),
    "lstm": ("lstm", 4, {}),
    "gru": ("gru", 3, {"reset_after": True}),
    "gru_noreset": ("gru", 3, {"reset_after": False}),
}
T, B, I, H = 5, 3, 4, 37          # H not a multiple of the panel widths (16 / 8)


def _weights(G, rng, bias=True):
    w = [0.4 * rng.standard_normal((G * H, I)), 0.4 * rng.standard_normal((G * H, H))]
    w += [0.3 * rng.standard_normal(G * H), 0.3 * rng.standard_normal(G * H)] if bias \
        else [None, None]
    return w


def _run_steps(kind, x, state0, weights):
    step = getattr(F, f"{kind}_step")
    state, outs = state0, []
    for t in range(x.shape[0]):
        state = step(x[t], state, weights)
        outs.append(state[0] if kind == "lstm" else state)
    return np.stack(outs), state


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_steps_equal_sequence_forward(variant, dtype, bias):
    kind, G, kw = VARIANTS[variant]
    rng = np.random.default_rng(1)
    w = _weights(G, rng, bias)
    x = rng.standard_normal((T, B, I))
    h0 = 0.5 * rng.standard_normal((B, H))
    c0 = 0.5 * rng.standard_normal((B, H))
    prepared = getattr(F, f"prepare_{kind}")(*w, dtype=dtype, **kw)
    assert prepared.dtype == dtype and (prepared.I, prepared.H) == (I, H)
    state0 = (h0.astype(dtype), c0.astype(dtype)) if kind == "lstm" else h0.astype(dtype)
    ys, state = _run_steps(kind, x.astype(dtype), state0, prepared)
    if kind == "lstm":
        y_ref, hT_ref, cT_ref, _ = R.lstm_forward(x, h0, c0, *w)
        finals, refs = state, (hT_ref, cT_ref)
    else:
        y_ref, hT_ref, _ = getattr(R, f"{kind}_forward")(x, h0, *w, **kw)
        finals, refs = (state,), (hT_ref,)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ys, y_ref, **tol)
    for got, ref in zip(finals, refs):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, **tol)
    # the compiled sequence forward agrees too
    if kind == "lstm":
        y_seq = F.lstm_forward(x.astype(dtype), *state0, *w, training=False)[0]
    else:
        y_seq = getattr(F, f"{kind}_forward")(x.astype(dtype), state0, *w, training=False,
                                               **kw)[0]
    np.testing.assert_allclose(ys, y_seq, **tol)


@pytest.mark.parametrize("variant", ["rnn_tanh", "lstm", "gru"])
def test_vector_input_none_state_and_raw_weight_tuple(variant):
    kind, G, kw = VARIANTS[variant]
    rng = np.random.default_rng(2)
    w = [a.astype(np.float32) for a in _weights(G, rng)]
    x = rng.standard_normal((T, I)).astype(np.float32)          # B = 1, as 1-D vectors
    prepared = getattr(F, f"prepare_{kind}")(*w, **kw)
    ys_p, state_p = _run_steps(kind, x, None, prepared)
    ys_t, state_t = _run_steps(kind, x, None, tuple(w))        # packed on each call
    assert ys_p.shape == (T, H)
    np.testing.assert_array_equal(ys_p, ys_t)
    batch = _run_steps(kind, x[:, None, :], None, prepared)[0][:, 0]
    np.testing.assert_array_equal(ys_p, batch)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_steps_do_not_depend_on_thread_count(variant):
    kind, G, kw = VARIANTS[variant]
    rng = np.random.default_rng(3)
    hidden = 300                                   # enough work per step to use threads
    w = [(0.1 * rng.standard_normal(s)).astype(np.float32)
         for s in ((G * hidden, 64), (G * hidden, hidden), (G * hidden,), (G * hidden,))]
    x = rng.standard_normal((4, 2, 64)).astype(np.float32)
    prepared = getattr(F, f"prepare_{kind}")(*w, **kw)
    from fastrnn.engine.threads import using
    with using(1):
        one = _run_steps(kind, x, None, prepared)[0]
    with using(2):
        two = _run_steps(kind, x, None, prepared)[0]
    np.testing.assert_array_equal(one, two)


def test_float16_input_and_output_dtype():
    rng = np.random.default_rng(4)
    w = _weights(4, rng)
    prepared = F.prepare_lstm(*w)
    h, c = F.lstm_step(rng.standard_normal((2, I)).astype(np.float16), None, prepared)
    assert h.dtype == np.float16 and c.dtype == np.float16 and h.shape == (2, H)


def test_prepare_copies_weights():
    rng = np.random.default_rng(5)
    w = _weights(3, rng)
    prepared = F.prepare_gru(*w)
    x = rng.standard_normal((2, I)).astype(np.float32)
    before = F.gru_step(x, None, prepared)
    w[1][:] = 0
    np.testing.assert_array_equal(F.gru_step(x, None, prepared), before)
    assert "StepWeights" in repr(prepared) and "reset_after=True" in repr(prepared)


def test_bad_input():
    rng = np.random.default_rng(6)
    w = _weights(4, rng)
    prepared = F.prepare_lstm(*w)
    x = rng.standard_normal((2, I)).astype(np.float32)
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, I\) or \(I,\) with I = 4"):
        F.lstm_step(rng.standard_normal((2, I + 1)), None, prepared)
    with pytest.raises(ValueError, match=r"h must have shape \(B, H\) = \(2, 37\)"):
        F.lstm_step(x, (np.zeros((2, H + 1)), np.zeros((2, H))), prepared)
    with pytest.raises(TypeError, match="state must be a tuple"):
        F.lstm_step(x, np.zeros((2, H)), prepared)
    with pytest.raises(TypeError, match="prepared for lstm_step, not gru_step"):
        F.gru_step(x, None, prepared)
    with pytest.raises(TypeError, match="weights must be a StepWeights"):
        F.rnn_step(x, None, "weights")
    with pytest.raises(TypeError, match="x_t must hold float16, float32 or float64"):
        F.lstm_step(x.astype(np.int32), None, prepared)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        F.prepare_lstm(*w, dtype=np.int64)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(4\*H, H\)"):
        F.prepare_lstm(w[0], w[1][:, :-1])
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        F.prepare_rnn(*_weights(1, rng), nonlinearity="gelu")


def _unaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    out = np.frombuffer(buf.data, a.dtype, a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


def test_step_weights_are_read_only_and_own_their_arrays():
    rng = np.random.default_rng(0)
    w = _weights(3, rng)
    sw = F.prepare_gru(*w)
    for field, value in [("I", 10 ** 6), ("H", 1), ("dtype", np.float64), ("packed", ()),
                         ("bias", None), ("kind", "lstm")]:
        with pytest.raises(AttributeError, match="read-only"):
            setattr(sw, field, value)
    with pytest.raises(AttributeError, match="read-only"):
        del sw.H
    for a in (sw.bias, sw.b_hn, *[p for p in sw.packed if isinstance(p, np.ndarray)]):
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[...] = 0
    assert w[2].flags.writeable and w[3].flags.writeable          # the caller's stay writable
    before = F.gru_step(np.ones(I), None, sw)
    w[3][:] = 100.0                                                # copies: not seen
    np.testing.assert_array_equal(F.gru_step(np.ones(I), None, sw), before)


def test_prepare_names_a_bad_dtype():
    w = _weights(4, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got 'notadtype'"):
        F.prepare_lstm(*w, dtype="notadtype")


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unaligned_inputs_to_the_step_functions(kind):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    rng = np.random.default_rng(1)
    w = _weights(G, rng)
    sw = getattr(F, f"prepare_{kind}")(*w, dtype=np.float64)
    x = rng.standard_normal((B, I))
    h = rng.standard_normal((B, H))
    step = getattr(F, f"{kind}_step")
    state = (h, h) if kind == "lstm" else h
    ustate = (_unaligned(h), _unaligned(h)) if kind == "lstm" else _unaligned(h)
    expect = step(x, state, sw)
    got = step(_unaligned(x), ustate, sw)
    for a, b in zip(np.atleast_1d(expect) if kind != "lstm" else expect,
                    np.atleast_1d(got) if kind != "lstm" else got):
        np.testing.assert_array_equal(a, b)


def test_layer_step_state_forms():
    from fastrnn import layers as L
    lstm = L.LSTM(I, 6, num_layers=2, seed=0).eval()
    x = np.ones(I, np.float32)
    y0, (h0, c0) = lstm.step(x)
    y1, (h1, c1) = lstm.step(x, (None, None))                      # zeros, as None
    np.testing.assert_array_equal(y0, y1)
    y2, _ = lstm.step(x, (None, c0))
    assert y2.shape == (6,)
    with pytest.raises(ValueError, match=r"state\[0\] \(h\) must have shape \(num_layers, H\) "
                                         r"= \(2, 6\) for a 1-D x_t, got \(\)"):
        lstm.step(x, (np.float32(0), c0))
    gru = L.GRU(I, 6, seed=0).eval()
    with pytest.raises(ValueError, match=r"state must have shape .* got \(\)"):
        gru.step(x, np.float32(0))
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        lstm.step(x, h0)
