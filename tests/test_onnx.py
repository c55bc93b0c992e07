"""Parity with ONNX Runtime's RNN / LSTM / GRU operators (skips without onnx/onnxruntime):
the same weights, converted to ONNX's layout, give the same outputs and final states,
with per-row lengths (sequence_lens), initial states and both directions."""
import numpy as np
import pytest

from fastrnn import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fastrnn import _onnx  # noqa: E402

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, "ragged"])
@pytest.mark.parametrize("cell, nonlinearity", [("rnn", "tanh"), ("rnn", "relu"),
                                                ("lstm", None), ("gru", None)])
def test_outputs_match_onnx_runtime(cell, nonlinearity, lengths, reverse):
    rng = np.random.default_rng(7)
    T, B, I, H = 6, 4, 3, 5
    G = GATES[cell]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w = [(0.5 * rng.standard_normal(s)).astype(np.float32)
         for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    lens = np.array([6, 2, 4, 1]) if lengths else np.full(B, T)
    kw = dict(lengths=lens if lengths else None, reverse=reverse, training=False)
    if cell == "lstm":
        y, hT, cT, _ = F.lstm_forward(x, h0, c0, *w, **kw)
        ours = [y, hT, cT]
    elif cell == "gru":
        y, hT, _ = F.gru_forward(x, h0, *w, **kw)
        ours = [y, hT]
    else:
        y, hT, _ = F.rnn_forward(x, h0, *w, nonlinearity=nonlinearity, **kw)
        ours = [y, hT]
    model = _onnx.single_layer_model(cell, I, H, *w, nonlinearity=nonlinearity,
                                     reverse=reverse)
    feeds = {"X": x, "sequence_lens": lens.astype(np.int32), "initial_h": h0[None]}
    if cell == "lstm":
        feeds["initial_c"] = c0[None]
    theirs = _onnx.session(model).run(None, feeds)
    theirs = [theirs[0][:, 0]] + [a[0] for a in theirs[1:]]
    for name, a, b in zip(["y", "hT", "cT"], ours, theirs):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=name)


def test_gate_reordering_round_trip():
    a = np.arange(12.0)
    np.testing.assert_array_equal(_onnx.to_onnx_gates("lstm", a),
                                  np.r_[0:3, 9:12, 3:6, 6:9].astype(float))
    np.testing.assert_array_equal(_onnx.to_onnx_gates("gru", a[:9]),
                                  np.r_[3:6, 0:3, 6:9].astype(float))
