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
    "go-backwards-2-repeat": lambda dt: [L.GRU(3, 4, num_layers=2, go_backwards=True,
                                               zero_output_for_mask=False, dtype=dt, seed=1)],
    "go-backwards-full-then-forward": lambda dt: [
        L.LSTM(3, 4, go_backwards=True, go_backwards_order="full", batch_first=True, dtype=dt,
               seed=1),
        L.RNN(4, 3, go_backwards=True, go_backwards_order="full", batch_first=True, dtype=dt,
              seed=2),
        L.GRU(3, 2, go_backwards=True, return_sequences=False, batch_first=True, dtype=dt,
              seed=3)],
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
                        (L.RNN(3, 4, stateful=True), "stateful"),
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


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("ragged", [False, True], ids=["full", "lengths"])
def test_every_export_loads_back(case, ragged, tmp_path):
    """export -> load gives the same layers (LastStep, merge modes and return_sequences=False
    included), exact weights and the same outputs."""
    model = fastrnn.Sequential(CASES[case](np.float32)).eval()
    if case == "lstm-peephole-dropout":
        for name, p in model.parameters().items():
            if "peep" in name:
                p[...] = np.random.default_rng(5).standard_normal(p.shape) * 0.5
    fonnx.export(model, tmp_path / "m.onnx", lengths=ragged)
    back = fonnx.load(tmp_path / "m.onnx").eval()
    kinds = []                       # Dense's activation comes back as its own layer
    for a in model.layers:
        if type(a).__name__ != "Dropout":
            kinds.append(type(a).__name__)
        if getattr(a, "activation", None):
            kinds.append({"tanh": "Tanh", "relu": "ReLU"}[a.activation])
    assert [type(a).__name__ for a in back.layers] == kinds
    for (k, a), (k2, b) in zip(model.parameters().items(), back.parameters().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    bf = model.layers[0].batch_first
    x = np.random.default_rng(2).standard_normal((3, 6, 3) if bf else (6, 3, 3))
    x = x.astype(np.float32)
    lengths = np.array([6, 2, 4]) if ragged else None
    np.testing.assert_array_equal(back.forward(x, lengths=lengths),
                                  model.forward(x, lengths=lengths))


def test_load_refuses_what_it_cannot_express(tmp_path):
    onnx, _, helper, _ = fonnx._onnx_modules()
    fonnx.export(fastrnn.Sequential([L.LSTM(3, 4, batch_first=True, seed=0)]),
                 tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    # append a ReduceMax over time (a max-pool, which fastrnn's load does not read)
    out = proto.graph.output[0].name
    proto.graph.node.append(helper.make_node("ReduceMax", [out], ["pooled"], axes=[1],
                                             keepdims=0))
    proto.graph.output[0].name = "pooled"
    with pytest.raises(ValueError, match=r"\(ReduceMax\)"):
        fonnx.load(proto)


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


def test_load_reads_a_torch_many_to_one_classifier(tmp_path):
    """torch's `out[:, -1]` after an nn.LSTM, then nn.Linear: LastStep and Dense."""
    import warnings
    torch = _torch()

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True,
                                      bidirectional=True)
            self.head = torch.nn.Linear(10, 4)

        def forward(self, x):
            out, _ = self.lstm(x)
            return torch.softmax(self.head(out[:, -1]), dim=-1)

    torch.manual_seed(1)
    module = Classifier().eval()
    x = np.random.default_rng(1).standard_normal((3, 6, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(tmp_path / "c.onnx"),
                          dynamo=False, input_names=["x"], output_names=["y"])
    model = fonnx.load(tmp_path / "c.onnx").eval()
    assert [type(a).__name__ for a in model.layers] == ["LSTM", "LastStep", "Dense", "Softmax"]
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("first", ["masking", "mask_zero"])
def test_masks_export_as_lengths_computed_in_the_graph(first):
    """Masking / Embedding(mask_zero) set the lengths from x: the graph computes them."""
    rng = np.random.default_rng(4)
    lengths = [6, 2, 4]
    if first == "masking":
        head = [L.Masking(mask_value=-1.0)]
        x = rng.standard_normal((3, 6, 3)).astype(np.float32)
        pad = -1.0
    else:
        head = [L.Embedding(9, 3, mask_zero=True, seed=0)]
        x = rng.integers(1, 9, (3, 6))
        pad = 0
    for b, n in enumerate(lengths):
        x[b, n:] = pad
    model = fastrnn.Sequential(head + [
        L.GRU(3, 4, bidirectional=True, batch_first=True, seed=1),
        L.LSTM(8, 3, batch_first=True, zero_output_for_mask=False, seed=2),
        L.Dense(3, 2, seed=3)])
    check(model, x)          # Keras's repeated last outputs at the padded steps included
    # the model's outputs are its own with those lengths
    np.testing.assert_array_equal(model.forward(x), fastrnn.Sequential(model.layers[1:]).forward(
        model.layers[0].forward(x), lengths=lengths))


def test_masks_are_refused_where_the_graph_cannot_follow():
    with pytest.raises(ValueError, match="first layer"):
        fonnx.export(fastrnn.Sequential([L.Dense(3, 3), L.Masking(),
                                         L.LSTM(3, 4, batch_first=True)]))
    with pytest.raises(ValueError, match="without lengths=True"):
        fonnx.export(fastrnn.Sequential([L.Masking(), L.LSTM(3, 4, batch_first=True)]),
                     lengths=True)


@pytest.mark.parametrize("first", ["masking", "mask_zero"])
def test_masked_models_load_back(first, tmp_path):
    rng = np.random.default_rng(6)
    if first == "masking":
        head, x = L.Masking(mask_value=0.5), rng.standard_normal((3, 6, 3)).astype(np.float32)
        x[1, 2:], x[2, 5:] = 0.5, 0.5
    else:
        head, x = L.Embedding(9, 3, mask_zero=True, seed=0), rng.integers(1, 9, (3, 6))
        x[1, 2:], x[2, 5:] = 0, 0
    model = fastrnn.Sequential([head, L.LSTM(3, 4, batch_first=True, go_backwards=True,
                                             go_backwards_order="full", seed=1),
                                L.GRU(4, 2, batch_first=True, zero_output_for_mask=False,
                                      seed=2)])
    fonnx.export(model, tmp_path / "m.onnx")
    back = fonnx.load(tmp_path / "m.onnx")
    assert [type(a).__name__ for a in back.layers] == ["Masking" if first == "masking" else
                                                       "Embedding", "LSTM", "GRU"]
    assert back.get_config() == model.get_config()
    np.testing.assert_array_equal(back.forward(x), model.forward(x))


def test_load_refuses_a_masking_whose_lengths_the_recurrence_ignores(tmp_path):
    model = fastrnn.Sequential([L.Masking(), L.GRU(3, 4, batch_first=True, seed=0)])
    proto = fonnx.export(model)
    (node,) = [n for n in proto.graph.node if n.op_type == "GRU"]
    node.input[4] = ""                         # the operator no longer takes the lengths
    with pytest.raises(ValueError, match="does not take the lengths of the Masking"):
        fonnx.load(proto)
