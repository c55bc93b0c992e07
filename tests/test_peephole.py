"""The peephole LSTM (functional.peephole_lstm_forward / _backward): against the NumPy
reference, float64 finite differences of every input, state and parameter, the plain LSTM
when the peepholes are zero, every thread count and parallel scheme, and ONNX Runtime's LSTM
with its P input when installed."""
import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from gradcheck import assert_close_fd

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}


def problem(T, B, I, H, dtype, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    p = dict(x=rng.standard_normal((T, B, I)), h0=rng.standard_normal((B, H)) * scale,
             c0=rng.standard_normal((B, H)) * scale,
             w_ih=rng.standard_normal((4 * H, I)) * scale / np.sqrt(I),
             w_hh=rng.standard_normal((4 * H, H)) * scale / np.sqrt(H),
             b_ih=rng.standard_normal(4 * H) * 0.1, b_hh=rng.standard_normal(4 * H) * 0.1,
             w_peep=rng.standard_normal(3 * H) * scale,
             dy=rng.standard_normal((T, B, H)), dhT=rng.standard_normal((B, H)),
             dcT=rng.standard_normal((B, H)))
    return {k: v.astype(dtype) for k, v in p.items()}


ARGS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_peep")


def run(mod, p, lengths=None, reverse=False, **kw):
    y, hT, cT, cache = mod.peephole_lstm_forward(*(p[k] for k in ARGS), lengths=lengths,
                                                 reverse=reverse, **kw)
    return y, hT, cT, cache


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, [5, 1, 3, 5, 2, 4, 5]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("H", [5, 40])
def test_matches_reference(dtype, lengths, reverse, H):
    p = problem(5, 7, 3, H, dtype)
    q = {k: v.astype(np.float64) for k, v in p.items()}
    got = run(F, p, lengths, reverse)
    ref = run(R, q, lengths, reverse)
    for a, b in zip(got[:3], ref[:3]):
        np.testing.assert_allclose(a, b, **TOL[dtype])
    g = F.peephole_lstm_backward(p["dy"], p["dhT"], p["dcT"], got[3])
    r = R.peephole_lstm_backward(q["dy"], q["dhT"], q["dcT"], ref[3])
    assert type(g) is F.PeepholeLSTMGrads and type(r) is F.PeepholeLSTMGrads
    for name in g._fields:
        assert getattr(g, name).dtype == dtype, name
        scale = max(1.0, float(np.abs(getattr(r, name)).max()))
        np.testing.assert_allclose(getattr(g, name), getattr(r, name), err_msg=name,
                                   rtol=TOL[dtype]["rtol"] * 10,
                                   atol=TOL[dtype]["atol"] * 10 * scale)


@pytest.mark.parametrize("lengths", [None, [4, 2, 1]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_finite_differences(lengths, reverse):
    """Every input, state and parameter, float64, against central differences of
    sum(y*Ry) + sum(hT*Rh) + sum(cT*Rc)."""
    p = problem(4, 3, 3, 6, np.float64, seed=1, scale=0.8)
    rng = np.random.default_rng(2)

    def loss():
        y, hT, cT, _ = run(F, p, lengths, reverse, training=False)
        return float(np.sum(y * p["dy"]) + np.sum(hT * p["dhT"]) + np.sum(cT * p["dcT"]))

    cache = run(F, p, lengths, reverse)[3]
    g = F.peephole_lstm_backward(p["dy"], p["dhT"], p["dcT"], cache)
    for name, grad in (("x", g.dx), ("h0", g.dh0), ("c0", g.dc0), ("w_ih", g.dw_ih),
                       ("w_hh", g.dw_hh), ("b_ih", g.db_ih), ("b_hh", g.db_hh),
                       ("w_peep", g.dw_peep)):
        assert_close_fd(grad, p[name], loss, rng, name, rtol=1e-6, atol=1e-8, n_entries=18)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_zero_peepholes_are_the_plain_lstm(dtype):
    p = problem(6, 4, 3, 20, dtype)
    p["w_peep"][:] = 0
    got = run(F, p, [6, 2, 5, 6])
    plain = F.lstm_forward(*(p[k] for k in ARGS[:-1]), lengths=[6, 2, 5, 6])
    for a, b in zip(got[:3], plain[:3]):
        np.testing.assert_array_equal(a, b)
    g = F.peephole_lstm_backward(p["dy"], p["dhT"], p["dcT"], got[3])
    h = F.lstm_backward(p["dy"], p["dhT"], p["dcT"], plain[3])
    for name in h._fields:
        np.testing.assert_array_equal(getattr(g, name), getattr(h, name), err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_thread_count_and_scheme_bit_identical(dtype, monkeypatch):
    from fastrnn.engine.threads import using
    p = problem(7, 9, 5, 40, dtype)
    lengths = [7, 1, 3, 7, 5, 2, 6, 4, 7]
    results = []
    for n, rows, fused in ((1, True, False), (2, False, False), (3, True, False),
                           (1, True, True), (2, True, True), (3, False, True)):
        monkeypatch.setattr(F, "_force_plan", lambda x, w, t, rows=rows: (t, rows))
        monkeypatch.setattr(F, "_force_fused", fused)
        with using(n):
            out = []
            for reverse in (False, True):
                y, hT, cT, cache = run(F, p, lengths, reverse)
                out += [y, hT, cT] + list(F.peephole_lstm_backward(p["dy"], None, None, cache))
                out += list(run(F, p, lengths, reverse, training=False)[:3])
        results.append((fused, out))
    for fused, out in results:
        base = next(o for f, o in results if f == fused)
        for a, b in zip(out, base):
            np.testing.assert_array_equal(a, b)


def test_step_matches_the_sequence():
    """The peephole's effect in the streaming step equals a one-step sequence call."""
    p = problem(1, 3, 4, 24, np.float64)
    y, hT, cT, _ = run(F, p, training=False)
    sw = F.prepare_lstm(p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], w_peep=p["w_peep"],
                         dtype=np.float64)
    h, c = F.lstm_step(p["x"][0], (p["h0"], p["c0"]), sw)
    assert "peephole" in repr(sw)
    np.testing.assert_allclose(h, hT, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c, cT, rtol=1e-13, atol=1e-14)


def test_bad_input():
    p = problem(3, 2, 3, 4, np.float64)
    args = [p[k] for k in ARGS]
    with pytest.raises(ValueError, match=r"w_peep must have shape \(3\*H,\) = \(12,\)"):
        F.peephole_lstm_forward(*args[:-1], np.zeros(16))
    with pytest.raises(TypeError, match="w_peep must be an array"):
        F.peephole_lstm_forward(*args[:-1], None)
    cache = F.peephole_lstm_forward(*args)[3]
    with pytest.raises(TypeError, match="cache comes from peephole_lstm_forward; lstm_backward"):
        F.lstm_backward(None, None, None, cache)
    cache = F.lstm_forward(*args[:-1])[3]
    with pytest.raises(TypeError, match="cache comes from lstm_forward; peephole_lstm_backward"):
        F.peephole_lstm_backward(None, None, None, cache)


def test_onnx_runtime_parity():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from fastrnn import _onnx
    for reverse in (False, True):
        p = problem(6, 4, 3, 16, np.float32, seed=4)
        lengths = np.array([6, 3, 1, 5])
        model = _onnx.single_layer_model("lstm", 3, 16, p["w_ih"], p["w_hh"], p["b_ih"],
                                         p["b_hh"], w_peep=p["w_peep"], reverse=reverse)
        sess = _onnx.session(model)
        Y, Y_h, Y_c = sess.run(None, {"X": p["x"], "sequence_lens": lengths.astype(np.int32),
                                      "initial_h": p["h0"][None], "initial_c": p["c0"][None]})
        y, hT, cT, _ = run(F, p, lengths, reverse, training=False)
        np.testing.assert_allclose(Y[:, 0], y, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(Y_h[0], hT, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(Y_c[0], cT, rtol=1e-5, atol=2e-6)
