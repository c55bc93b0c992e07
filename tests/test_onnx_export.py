"""fastrnn.onnx.export: a Sequential -> a standard ONNX graph -> ONNX Runtime gives the same
outputs as model.forward in evaluation mode (float32 and float64, both layouts, lengths,
bidirectional, multi-layer), or a clear refusal."""
import numpy as np
import pytest

import fastrnn
from fastrnn import layers as L

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from fastrnn import onnx as fonnx  # noqa: E402


def run(proto, feeds):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["y"], feeds)[0]


def check(model, x, lengths=None, tol=2e-5, tmp_path=None):
    model.eval()
    want = model.forward(x) if lengths is None else model.forward(x, lengths=lengths)
    path = None if tmp_path is None else tmp_path / "m.onnx"
    proto = fonnx.export(model, path, lengths=lengths is not None)
    feeds = {"x": x}
    if lengths is not None:
        feeds["lengths"] = np.asarray(lengths, np.int64)
    got = run(proto, feeds)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    return proto


CASES = {
    "lstm-bi-2-bf-laststep": lambda dt: [L.LSTM(3, 5, num_layers=2, bidirectional=True,
                                                batch_first=True, dtype=dt, seed=1),
                                         L.LastStep(), L.Dense(10, 2, dtype=dt, seed=2)],
    "gru-tm-seq-dense-tanh": lambda dt: [L.GRU(3, 4, dtype=dt, seed=1),
                                         L.Dense(4, 3, activation="tanh", dtype=dt, seed=2)],
    "gru-reset-before-bi": lambda dt: [L.GRU(3, 4, reset_after=False, bidirectional=True,
                                             batch_first=True, dtype=dt, seed=1)],
    "rnn-relu-2-softmax": lambda dt: [L.RNN(3, 4, num_layers=2, nonlinearity="relu",
                                            batch_first=True, dtype=dt, seed=1),
                                      L.Dense(4, 3, dtype=dt, seed=2), L.Softmax()],
    "lstm-last-state-bi-sum": lambda dt: [L.LSTM(3, 4, bidirectional=True, merge_mode="sum",
                                                 return_sequences=False, batch_first=True,
                                                 dtype=dt, seed=1), L.ReLU()],
    "lstm-peephole-dropout": lambda dt: [L.LSTM(3, 4, peephole=True, batch_first=True,
                                                dtype=dt, seed=1), L.Dropout(0.5),
                                         L.Sigmoid()],
}


@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("case", list(CASES))
def test_exported_graph_matches_the_model(case, ragged):
    dtype = np.float32              # ONNX Runtime's recurrent operators run float32 only
    layers = CASES[case](dtype)
    model = fastrnn.Sequential(layers)
    if case == "lstm-peephole-dropout":
        for k, v in model.parameters().items():
            if "peep" in k:
                v[...] = np.random.default_rng(5).uniform(-0.5, 0.5, v.shape)
    bf = getattr(layers[0], "batch_first", True)
    B, T = 4, 7
    x = np.random.default_rng(0).standard_normal((B, T, 3) if bf else (T, B, 3)).astype(dtype)
    lengths = [7, 2, 5, 1] if ragged else None
    check(model, x, lengths)


@pytest.mark.parametrize("case", list(CASES))
def test_float64_models_export_as_double(case):
    """A float64 model becomes a valid graph of DOUBLE tensors (ONNX Runtime itself has no
    float64 LSTM/GRU/RNN kernels to run it with)."""
    import onnx
    proto = fonnx.export(fastrnn.Sequential(CASES[case](np.float64)), lengths=True)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert all(t.data_type == onnx.TensorProto.DOUBLE for t in proto.graph.initializer
               if t.name.split("_")[0] in ("W", "R", "B", "P", "weight", "bias"))


def test_embedding_model_to_a_file(tmp_path):
    model = fastrnn.Sequential([L.Embedding(20, 6, seed=0),
                                L.LSTM(6, 8, batch_first=True, bidirectional=True, seed=1),
                                L.LastStep(), L.Dense(16, 3, seed=2)])
    ids = np.random.default_rng(1).integers(0, 20, (5, 9))
    check(model, ids, [9, 3, 1, 9, 4], tmp_path=tmp_path)
    import onnx
    proto = onnx.load(str(tmp_path / "m.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"Gather", "LSTM", "MatMul", "Add", "GatherElements"} <= ops
    assert [i.name for i in proto.graph.input] == ["x", "lengths"]


def test_refusals_name_the_layer():
    for layer, what in [(L.LSTM(3, 4, layer_norm=True), "layer_norm"),
                        (L.LSTM(3, 4, proj_size=2), "proj_size"),
                        (L.GRU(3, 4, zoneout=0.1), "zoneout"),
                        (L.RNN(3, 4, go_backwards=True), "go_backwards"),
                        (L.Pool(), "no ONNX export yet")]:
        model = fastrnn.Sequential([L.Dense(3, 3), layer] if isinstance(layer, L.Pool)
                                   else [layer])
        with pytest.raises(ValueError, match=what):
            fonnx.export(model)
    with pytest.raises(TypeError, match="takes a fastrnn.Sequential"):
        fonnx.export(L.LSTM(3, 4))
