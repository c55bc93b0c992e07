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


# ---- the layer option: layers.LSTM(peephole=True) ---------------------------------------

def _peephole_layer(**kw):
    from fastrnn import layers as L
    layer = L.LSTM(3, 6, peephole=True, dtype=np.float64, seed=4, **kw)
    rng = np.random.default_rng(9)
    for name, p in layer.parameters().items():
        if name.startswith("weight_peep"):
            p[...] = rng.standard_normal(p.shape) * 0.5
    return layer


def test_layer_parameters_and_functional_equivalence():
    from fastrnn import layers as L
    layer = _peephole_layer(num_layers=2, bidirectional=True)
    names = [n for n in layer.parameters() if n.startswith("weight_peep")]
    assert names == ["weight_peep_l0", "weight_peep_l0_reverse", "weight_peep_l1",
                     "weight_peep_l1_reverse"]
    assert all(layer.parameters()[n].shape == (18,) for n in names)
    assert np.all(L.LSTM(3, 6, peephole=True).parameters()["weight_peep_l0"] == 0)
    one = _peephole_layer()
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    y, (h, c) = one.forward(x, lengths=[5, 3], training=False)
    p = one.parameters()
    ref = F.peephole_lstm_forward(x, None, None, p["weight_ih_l0"], p["weight_hh_l0"],
                                  p["bias_ih_l0"], p["bias_hh_l0"], p["weight_peep_l0"],
                                  lengths=[5, 3], training=False)
    np.testing.assert_array_equal(y, ref[0])
    np.testing.assert_array_equal(c[0], ref[2])


def test_layer_step_matches_forward_and_stateful_runs():
    layer = _peephole_layer(num_layers=2)
    x = np.random.default_rng(2).standard_normal((6, 2, 3))
    y, _ = layer.forward(x, training=False)
    layer.eval()
    state = None
    for t in range(6):
        y_t, state = layer.step(x[t], state)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-12, atol=1e-13)
    s = _peephole_layer(num_layers=2, stateful=True)
    a, _ = s.forward(x[:3], training=False)
    b, _ = s.forward(x[3:], training=False)
    np.testing.assert_allclose(np.concatenate([a, b]), y, rtol=1e-12, atol=1e-13)


def test_layer_saves_loads_and_trains(tmp_path):
    import fastrnn
    from fastrnn import layers as L
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 12, 2)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    model = fastrnn.Sequential([L.LSTM(2, 16, peephole=True, batch_first=True, seed=0),
                                L.LastStep(), L.Dense(16, 2, seed=0)])
    before = model.evaluate(x, y, loss="cross_entropy")["loss"]
    hist = model.fit(x, y, loss="cross_entropy", optimizer="adam", epochs=8, batch_size=16,
                     seed=0, verbose=0)
    assert hist.history["loss"][-1] < before
    assert np.any(model.layers[0].parameters()["weight_peep_l0"] != 0)    # it learned them
    path = tmp_path / "peep.npz"
    fastrnn.save(model, path)
    again = fastrnn.load(path)
    assert again.layers[0].peephole is True
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_layer_refuses_keras_layouts_and_bad_options():
    from fastrnn import layers as L
    with pytest.raises(ValueError, match="Keras's LSTM has no weight_peep"):
        _peephole_layer().to_keras_weights()
    with pytest.raises(TypeError, match="peephole must be True or False"):
        L.LSTM(3, 4, peephole="yes")


def test_bench_times_the_variant_against_the_plain_cell():
    import io
    from fastrnn import bench
    out = io.StringIO()
    table = bench.run_table(["peephole_lstm", "projection_lstm"], [(2, 3, 4, 5)],
                            ["infer", "train"], use_torch=False, use_onnx=False, budget=0.01,
                            min_rounds=1, out=out)
    assert [(r["cell"], r["mode"]) for r in table["rows"]] == [
        ("peephole_lstm", "infer"), ("peephole_lstm", "train"), ("projection_lstm", "infer"),
        ("projection_lstm", "train")]
    for row in table["rows"]:
        assert row["plain_ms"] > 0 and row["numpy_ms"] > 0 and "torch_ms" not in row
    text = out.getvalue()
    assert "Cell variants against fastrnn's plain cell" in text
    assert "| peephole_lstm | (2, 3, 4, 5) | train |" in text


def test_bench_cli_keeps_variants_to_the_table(capsys):
    from fastrnn.__main__ import main
    with pytest.raises(SystemExit, match="is for the table only"):
        main(["bench", "--cells", "peephole_lstm", "--stream"])


def test_onnx_peephole_conversion_round_trips():
    from fastrnn import _onnx
    w = np.arange(12, dtype=np.float32)             # p_i 0-3, p_f 4-7, p_o 8-11
    P = _onnx.onnx_peepholes(w)
    assert P.shape == (1, 12)
    np.testing.assert_array_equal(P[0], np.r_[0:4, 8:12, 4:8])        # ONNX order i|o|f
    np.testing.assert_array_equal(_onnx.from_onnx_peepholes(P), w)
    np.testing.assert_array_equal(_onnx.from_onnx_peepholes(P[0]), w)
