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


torch = None


def _torch():
    return pytest.importorskip("torch")


TORCH_MODELS = [
    ("lstm-2-bi-bf", lambda nn: nn.LSTM(3, 5, num_layers=2, bidirectional=True,
                                        batch_first=True)),
    ("lstm-tm", lambda nn: nn.LSTM(3, 4)),
    ("gru-bi", lambda nn: nn.GRU(3, 4, bidirectional=True, batch_first=True)),
    ("gru-2", lambda nn: nn.GRU(3, 4, num_layers=2)),
    ("rnn-relu-bf", lambda nn: nn.RNN(3, 4, nonlinearity="relu", batch_first=True)),
]


@pytest.mark.parametrize("name,make", TORCH_MODELS, ids=[n for n, _ in TORCH_MODELS])
def test_load_reads_what_torch_onnx_export_writes(name, make, tmp_path):
    """torch.onnx.export of an nn.LSTM / GRU / RNN -> fastrnn.onnx.load -> the same outputs
    as torch (and as ONNX Runtime on the file), with the weights exact."""
    import warnings
    torch = _torch()
    torch.manual_seed(0)
    module = make(torch.nn).eval()
    shape = (2, 6, 3) if module.batch_first else (6, 2, 3)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    path = tmp_path / "t.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"])
    model = fonnx.load(path)
    (layer,) = model.layers
    assert type(layer).__name__ == type(module).__name__
    assert (layer.num_layers, layer.bidirectional, layer.batch_first) == \
        (module.num_layers, module.bidirectional, module.batch_first)
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(layer.parameters()[k], v.numpy(), err_msg=k)
    with torch.no_grad():
        want = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(model.eval().forward(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(__import__("onnx").load(str(path)), {"x": x}), want,
                               rtol=1e-5, atol=1e-6)


def test_export_then_load_round_trip(tmp_path):
    model = fastrnn.Sequential([L.Embedding(12, 4, seed=0),
                                L.GRU(4, 5, num_layers=2, bidirectional=True, batch_first=True,
                                      seed=1),
                                L.Dense(10, 3, activation="relu", seed=2), L.Softmax()])
    fonnx.export(model, tmp_path / "m.onnx", lengths=True)
    back = fonnx.load(tmp_path / "m.onnx")
    assert [type(a).__name__ for a in back.layers] == ["Embedding", "GRU", "Dense", "ReLU",
                                                       "Softmax"]
    for (k, a), (k2, b) in zip(model.parameters().items(), back.parameters().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    ids = np.random.default_rng(3).integers(0, 12, (3, 7))
    lengths = [7, 2, 5]
    np.testing.assert_allclose(back.eval().forward(ids, lengths=lengths),
                               model.eval().forward(ids, lengths=lengths), rtol=1e-6)


def test_load_refuses_what_it_cannot_express(tmp_path):
    model = fastrnn.Sequential([L.LSTM(3, 4, batch_first=True, seed=0), L.LastStep()])
    fonnx.export(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"\(Gather\)|no fastrnn equivalent"):
        fonnx.load(tmp_path / "m.onnx")


def test_load_refuses_a_graph_that_starts_from_its_input_state(tmp_path):
    import warnings
    torch = _torch()
    module = torch.nn.GRU(3, 4).eval()
    x, h0 = torch.zeros(5, 2, 3), torch.zeros(1, 2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x, h0), str(tmp_path / "g.onnx"), dynamo=False,
                          input_names=["x", "h0"], output_names=["y", "h"])
    with pytest.raises(ValueError, match="starts from a state that is not zeros"):
        fonnx.load(tmp_path / "g.onnx")
