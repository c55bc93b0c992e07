"""Sequential, custom Models, summary, save/load (atomic, no pickle), Keras weight interchange."""
import json
import os
import zipfile

import numpy as np
import pytest

import fastrnn
from fastrnn import layers as L
from fastrnn import losses
from gradcheck import assert_close_fd, check_layer


def classifier(dtype=np.float64, seed=0):
    return fastrnn.Sequential([
        L.Embedding(11, 4, padding_idx=0, dtype=dtype, seed=seed),
        L.LSTM(4, 5, num_layers=2, bidirectional=True, dtype=dtype, seed=seed),
        L.Pool("mean"),
        L.Dense(10, 6, activation="tanh", dtype=dtype, seed=seed),
        L.Dense(6, 3, dtype=dtype, seed=seed),
    ])


def ids_and_lengths(rng, T=6, B=4):
    lengths = np.array([6, 2, 5, 3])[:B]
    ids = rng.integers(1, 11, (T, B))
    ids[np.arange(T)[:, None] >= lengths[None, :]] = 0
    return ids, lengths


# ----------------------------------------------------------------------------------------
# Sequential

def test_sequential_gradients_finite_differences():
    rng = np.random.default_rng(0)
    model = classifier()
    ids, lengths = ids_and_lengths(rng)
    check_layer(model, ids, lambda m, x: m.forward(x, lengths=lengths), rng,
                check_input=False, n_entries=6)


def test_sequential_with_continuous_input_and_laststep_fd():
    rng = np.random.default_rng(1)
    model = fastrnn.Sequential([L.GRU(3, 4, dtype=np.float64, seed=1), L.LastStep(),
                                L.Dense(4, 2, dtype=np.float64, seed=1)])
    x = rng.standard_normal((5, 3, 3))
    lengths = np.array([5, 2, 4])
    check_layer(model, x, lambda m, v: m.forward(v, lengths=lengths), rng)


def test_sequential_names_match_torch_sequential_and_load():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Embedding(11, 4), torch.nn.Linear(4, 3))
    model = fastrnn.Sequential([L.Embedding(11, 4), L.Dense(4, 3)])
    assert list(model.parameters()) == list(tm.state_dict())
    model.load_state_dict(tm.state_dict())
    ids = np.array([[1, 2], [3, 4]])
    np.testing.assert_allclose(model.forward(ids), tm(torch.tensor(ids)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)        # float32, summation order differs


def test_sequential_mask_training_override_and_modes():
    rng = np.random.default_rng(2)
    model = fastrnn.Sequential([L.RNN(2, 3, dropout=0.5, num_layers=2, seed=0), L.LastStep()])
    x = rng.standard_normal((4, 2, 2)).astype(np.float32)
    mask = L.sequence_mask([4, 2], 4)
    model.eval()
    assert all(not lay.training for _, lay in model.named_layers())
    a = model.forward(x, mask=mask)
    b = model.forward(x, lengths=[4, 2])
    np.testing.assert_array_equal(a, b)
    model.forward(x, lengths=[4, 2], training=True)      # one call in training mode
    assert not model[0].training
    model.backward(np.ones((2, 3), np.float32))
    model.train()
    assert all(lay.training for _, lay in model.named_layers())


def test_a_layer_without_input_gradient_must_be_first():
    class Frozen(L.Layer):                      # e.g. a feature extractor that is not trained
        def forward(self, x):
            return x

        def backward(self, dy):
            return None

    ok = fastrnn.Sequential([L.Embedding(3, 2), L.Dense(2, 2)])
    ok.forward(np.array([0, 2]))
    assert ok.backward(np.ones((2, 2), np.float32)) is None
    bad = fastrnn.Sequential([L.Dense(2, 2), Frozen(), L.Dense(2, 1)])
    bad.forward(np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="layer 1 .Frozen. has no input gradient"):
        bad.backward(np.ones((1, 1), np.float32))


def test_summary(capsys):
    model = classifier(np.float32)
    model.summary(input_shape=(6, None))
    out = capsys.readouterr().out
    assert "LSTM" in out and "(6, ?, 10)" in out and "(?, 3)" in out
    assert f"total parameters: {model.num_parameters():,}" in out
    rng = np.random.default_rng(0)
    ids, lengths = ids_and_lengths(rng)
    model.forward(ids, lengths=lengths)
    model.summary()
    out = capsys.readouterr().out
    assert "(6, 4, 10)" in out and "(4, 3)" in out


# ----------------------------------------------------------------------------------------
# a custom Model: encoder-decoder

class Seq2Seq(fastrnn.Model):
    def __init__(self, vocab, hidden, dtype="float64"):
        super().__init__()
        self.vocab, self.hidden, self.dtype = vocab, hidden, dtype
        self.src_embed = L.Embedding(vocab, hidden, dtype=dtype, seed=0)
        self.tgt_embed = L.Embedding(vocab, hidden, dtype=dtype, seed=1)
        self.encoder = L.LSTM(hidden, hidden, dtype=dtype, seed=2)
        self.decoder = L.LSTM(hidden, hidden, dtype=dtype, seed=3)
        self.out = L.Dense(hidden, vocab, dtype=dtype, seed=4)

    def forward(self, src, tgt_in):
        _, state = self.encoder.forward(self.src_embed.forward(src))
        y, _ = self.decoder.forward(self.tgt_embed.forward(tgt_in), state=state)
        return self.out.forward(y)

    def backward(self, dlogits):
        dy = self.out.backward(dlogits)
        self.tgt_embed.backward(self.decoder.backward(dy))
        self.src_embed.backward(self.encoder.backward(None, dstate=self.decoder.state_grad))

    def get_config(self):
        return {"vocab": self.vocab, "hidden": self.hidden, "dtype": self.dtype}


def test_custom_encoder_decoder_gradients():
    rng = np.random.default_rng(3)
    model = Seq2Seq(7, 4)
    src, tgt_in, tgt_out = (rng.integers(0, 7, (5, 2)), rng.integers(0, 7, (4, 2)),
                            rng.integers(0, 7, (4, 2)))
    ce = losses.CrossEntropy()

    def loss():
        return ce.forward(model.forward(src, tgt_in), tgt_out)

    model.zero_grad()
    loss()
    model.backward(ce.backward())
    grads = {k: v.copy() for k, v in model.grads.items()}
    assert any(k.startswith("encoder.") for k in grads)
    for k, p in model.parameters().items():
        assert_close_fd(grads[k], p, loss, rng, k, n_entries=5)


# ----------------------------------------------------------------------------------------
# save / load

def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    model = classifier(np.float32)
    ids, lengths = ids_and_lengths(rng)
    model.eval()
    want = model.forward(ids, lengths=lengths)
    path = tmp_path / "m.fastrnn"
    fastrnn.save(model, path)
    back = fastrnn.load(path).eval()
    assert isinstance(back, fastrnn.Sequential)
    assert [type(x) for x in back] == [type(x) for x in model]
    np.testing.assert_array_equal(back.forward(ids, lengths=lengths), want)
    assert back[1].get_config() == model[1].get_config()
    for k, v in model.state_dict().items():
        assert np.array_equal(back.state_dict()[k], v) and back.state_dict()[k].dtype == v.dtype


@pytest.mark.parametrize("layer", [
    L.GRU(3, 4, reset_after=False, go_backwards=True, return_sequences=False, seed=0),
    L.RNN(3, 4, nonlinearity="relu", num_layers=2, bidirectional=True, merge_mode="ave",
          dtype=np.float64, batch_first=True, stateful=True),
    L.LSTM(3, 4, unit_forget_bias=True, bias_initializer="zeros", dropout=0.2, num_layers=2),
    L.Dropout(0.3), L.Softmax(axis=0), L.Pool("max", batch_first=True),
])
def test_every_layer_saves_and_loads(tmp_path, layer):
    fastrnn.save(layer, tmp_path / "x")
    back = fastrnn.load(tmp_path / "x")
    assert type(back) is type(layer) and back.get_config() == layer.get_config()


def test_custom_model_needs_custom_objects(tmp_path):
    model = Seq2Seq(5, 3)
    fastrnn.save(model, tmp_path / "s2s")
    with pytest.raises(fastrnn.ModelFileError, match="custom_objects"):
        fastrnn.load(tmp_path / "s2s")
    back = fastrnn.load(tmp_path / "s2s", custom_objects={"Seq2Seq": Seq2Seq})
    src, tgt = np.array([[1], [2]]), np.array([[3]])
    np.testing.assert_array_equal(back.forward(src, tgt), model.forward(src, tgt))


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.fastrnn"
    good = classifier(np.float32, seed=1)
    fastrnn.save(good, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        f = args[0]
        f.write(b"partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        fastrnn.save(classifier(np.float32, seed=2), path)
    assert path.read_bytes() == before                    # the good model is intact
    assert os.listdir(tmp_path) == ["m.fastrnn"]          # no temp file left behind
    monkeypatch.undo()
    fastrnn.load(path)


def test_load_refuses_corrupt_and_foreign_files(tmp_path):
    path = tmp_path / "m.fastrnn"
    fastrnn.save(classifier(np.float32), path)
    data = path.read_bytes()
    (tmp_path / "trunc").write_bytes(data[: len(data) // 2])
    (tmp_path / "text").write_text("hello")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    np.savez(tmp_path / "pickled.npz", __fastrnn_config__=np.array([{"a": 1}], dtype=object))
    for name in ["trunc", "text", "plain.npz", "pickled.npz"]:
        with pytest.raises(fastrnn.ModelFileError):
            fastrnn.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        fastrnn.load(tmp_path / "missing")
    with pytest.raises(fastrnn.ModelFileError, match="directory"):
        fastrnn.load(tmp_path)


def test_load_says_what_a_foreign_file_is(tmp_path):
    np.save(tmp_path / "arr.npy", np.zeros(3))
    (tmp_path / "notes.txt").write_text("some notes\n")
    (tmp_path / "empty").write_bytes(b"")
    for name, what in [("arr.npy", "single NumPy array"), ("notes.txt", "text file"),
                       ("empty", "empty")]:
        with pytest.raises(fastrnn.ModelFileError, match=what) as info:
            fastrnn.load(tmp_path / name)
        assert "pickle" not in str(info.value)       # never advise allow_pickle


def test_save_into_a_missing_folder_names_the_given_path(tmp_path):
    target = tmp_path / "no" / "such" / "m.fastrnn"
    with pytest.raises(FileNotFoundError, match="folder .*does not exist") as info:
        fastrnn.save(L.GRU(2, 3), target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        fastrnn.save(L.GRU(2, 3), tmp_path)


@pytest.mark.parametrize("other, layer, says", [
    (dict(cls=L.LSTM, args=(3, 5)), L.LSTM(3, 7), "hidden_size: the layer has 7, the state "
                                                  "dict 5"),
    (dict(cls=L.LSTM, args=(4, 7)), L.LSTM(3, 7), "input_size: the layer has 3, the state "
                                                  "dict 4"),
    (dict(cls=L.GRU, args=(3, 7)), L.LSTM(3, 7), "another cell type"),
    (dict(cls=L.LSTM, args=(3, 7), kw=dict(num_layers=2)),
     L.LSTM(3, 7, num_layers=2, bidirectional=True), "unexpected keys"),
])
def test_state_dict_of_the_wrong_size_says_which_size_differs(other, layer, says):
    src = other["cls"](*other["args"], **other.get("kw", {})).state_dict()
    with pytest.raises((ValueError, KeyError), match=says):
        layer.load_state_dict(src)
    model = fastrnn.Sequential([L.Embedding(10, 3), L.LSTM(3, 7), L.Dense(7, 2)])
    sd = model.state_dict()
    sd["2.weight"] = np.zeros((4, 7))
    sd["0.weight"] = np.zeros((10, 5))
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert "out_features: the layer has 2, the state dict 4" in msg
    assert "embedding_dim: the layer has 3, the state dict 5" in msg


def _rewrite(path, header=None, drop=None):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    if header is not None:
        arrays["__fastrnn_config__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)


def test_load_refuses_inconsistent_contents(tmp_path):
    p = tmp_path / "m.npz"
    fastrnn.save(L.GRU(2, 3), p)
    with zipfile.ZipFile(p) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    good = json.loads(bytes(np.load(p)["__fastrnn_config__"]).decode())
    _rewrite(p, drop="param:weight_hh_l0")
    with pytest.raises(fastrnn.ModelFileError, match="do not fit"):
        fastrnn.load(p)
    fastrnn.save(L.GRU(2, 3), p)
    _rewrite(p, header=dict(good, format="other"))
    with pytest.raises(fastrnn.ModelFileError, match="not a fastrnn model"):
        fastrnn.load(p)
    fastrnn.save(L.GRU(2, 3), p)
    _rewrite(p, header=dict(good, format_version=99))
    with pytest.raises(fastrnn.ModelFileError, match="version"):
        fastrnn.load(p)
    fastrnn.save(L.GRU(2, 3), p)
    bad = dict(good)
    bad["model"] = {"class": "GRU", "config": dict(good["model"]["config"], hidden_size=-1)}
    _rewrite(p, header=bad)
    with pytest.raises(fastrnn.ModelFileError, match="cannot build GRU"):
        fastrnn.load(p)


def test_save_refuses_non_layers_and_unsaveable_configs(tmp_path):
    with pytest.raises(TypeError, match="model must be"):
        fastrnn.save({"w": np.zeros(2)}, tmp_path / "x")

    class NoConfig(fastrnn.Model):
        pass

    with pytest.raises(NotImplementedError, match="get_config"):
        fastrnn.save(NoConfig(), tmp_path / "x")
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------------------
# Keras weights (hand-built arrays in Keras 3 layouts; Keras itself not needed)

def _sig(x):
    return 1 / (1 + np.exp(-x))


def keras_lstm(x, kernel, rec, bias):
    T, B, _ = x.shape
    H = rec.shape[0]
    h, c, ys = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):
        z = x[t] @ kernel + h @ rec + bias
        i, f, g, o = _sig(z[:, :H]), _sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), \
            _sig(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys)


def keras_gru(x, kernel, rec, bias, reset_after):
    T, B, _ = x.shape
    H = rec.shape[0]
    h, ys = np.zeros((B, H)), []
    for t in range(T):
        if reset_after:
            xz = x[t] @ kernel + bias[0]
            hz = h @ rec + bias[1]
            z = _sig(xz[:, :H] + hz[:, :H])
            r = _sig(xz[:, H:2 * H] + hz[:, H:2 * H])
            hh = np.tanh(xz[:, 2 * H:] + r * hz[:, 2 * H:])
        else:
            xz = x[t] @ kernel + bias
            z = _sig(xz[:, :H] + h @ rec[:, :H])
            r = _sig(xz[:, H:2 * H] + h @ rec[:, H:2 * H])
            hh = np.tanh(xz[:, 2 * H:] + (r * h) @ rec[:, 2 * H:])
        h = z * h + (1 - z) * hh
        ys.append(h)
    return np.stack(ys)


def keras_simple_rnn(x, kernel, rec, bias):
    h, ys = np.zeros((x.shape[1], rec.shape[0])), []
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ kernel + h @ rec + bias)
        ys.append(h)
    return np.stack(ys)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_before", "rnn"])
def test_from_keras_weights_reproduces_keras_math(kind):
    rng = np.random.default_rng(5)
    T, B, I, H = 5, 3, 4, 3
    G = {"lstm": 4, "gru": 3, "gru_before": 3, "rnn": 1}[kind]
    kernel = rng.standard_normal((I, G * H)) * 0.5
    rec = rng.standard_normal((H, G * H)) * 0.5
    bias = rng.standard_normal((2, 3 * H) if kind == "gru" else (G * H,)) * 0.5
    x = rng.standard_normal((T, B, I))
    if kind == "lstm":
        layer, want = L.LSTM(I, H, dtype=np.float64), keras_lstm(x, kernel, rec, bias)
    elif kind == "rnn":
        layer, want = L.RNN(I, H, dtype=np.float64), keras_simple_rnn(x, kernel, rec, bias)
    else:
        ra = kind == "gru"
        layer = L.GRU(I, H, reset_after=ra, dtype=np.float64)
        want = keras_gru(x, kernel, rec, bias, ra)
    layer.from_keras_weights([kernel, rec, bias])
    np.testing.assert_allclose(layer.forward(x)[0], want, rtol=1e-12, atol=1e-14)
    back = layer.to_keras_weights()
    for a, b in zip(back, [kernel, rec, bias]):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [L.LSTM, L.GRU, L.RNN])
def test_keras_round_trip_multilayer_bidirectional(cls):
    layer = cls(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y = layer.forward(x)[0]
    weights = layer.to_keras_weights()
    assert len(weights) == 2 * 2 * 3
    assert weights[0].shape == (3, cls._G * 4) and weights[6].shape == (8, cls._G * 4)
    other = cls(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=1)
    other.from_keras_weights(weights)
    np.testing.assert_allclose(other.forward(x)[0], y, rtol=1e-12, atol=1e-14)
    for a, b in zip(other.to_keras_weights(), weights):
        np.testing.assert_array_equal(a, b)


def test_keras_weights_without_bias_and_bad_lists():
    layer = L.GRU(2, 3, bias=False)
    w = layer.to_keras_weights()
    assert len(w) == 2
    layer.from_keras_weights(w)
    with pytest.raises(ValueError, match="must hold 2 arrays"):
        layer.from_keras_weights(w + [np.zeros(9)])
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \(3, 9\)"):
        layer.from_keras_weights([w[0], w[1].T])
    with pytest.raises(TypeError, match="list of arrays"):
        layer.from_keras_weights(np.zeros(3))
    with pytest.raises(ValueError, match=r"weights\[2\] must have shape \(2, 9\), got \(9,\): "
                                         r"a bias of Keras's GRU with reset_after=False"):
        L.GRU(2, 3).from_keras_weights([w[0], w[1], np.zeros(9)])
    with pytest.raises(ValueError, match="reset_after=True, this layer has reset_after=False"):
        L.GRU(2, 3, reset_after=False).from_keras_weights([w[0], w[1], np.zeros((2, 9))])


# ----------------------------------------------------------------------------------------
# layouts: time-major vs batch-first can not be mixed up silently

def test_reductions_take_the_layout_of_the_chain():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 9, 3)).astype(np.float32)          # (B, T, I)
    lengths = np.array([9, 3, 5, 1])
    for red in (L.LastStep, lambda: L.Pool("mean"), lambda: L.Pool("max")):
        auto = fastrnn.Sequential([L.LSTM(3, 5, batch_first=True, seed=0), red(),
                                   L.Dense(5, 2, seed=0)])
        assert auto.output_shape((4, 9, 3)) == (4, 2)
        y = auto.forward(x, lengths=lengths)
        assert y.shape == (4, 2)                                    # B predictions, not T
        tm = fastrnn.Sequential([L.LSTM(3, 5, seed=0), red(), L.Dense(5, 2, seed=0)])
        np.testing.assert_allclose(tm.forward(x.swapaxes(0, 1), lengths=lengths), y,
                                   rtol=1e-5, atol=1e-6)
    p = fastrnn.Sequential([L.GRU(3, 5, batch_first=True), L.LastStep()])
    assert p[1].batch_first is None and p[1].layout_batch_first is True
    assert L.LastStep().layout_batch_first is False                 # on its own: time-major


def test_sequential_refuses_mixed_layouts(tmp_path):
    with pytest.raises(ValueError, match=r"layer 1 \(LastStep\) has batch_first=False but "
                                         r"layer 0 \(LSTM\) has batch_first=True"):
        fastrnn.Sequential([L.LSTM(3, 5, batch_first=True), L.LastStep(batch_first=False)])
    with pytest.raises(ValueError, match="one layout"):
        fastrnn.Sequential([L.GRU(3, 5), L.Dense(5, 5), L.GRU(5, 5, batch_first=True)])
    model = fastrnn.Sequential([L.GRU(3, 5, batch_first=True), L.Pool("max"), L.Dense(5, 1)])
    fastrnn.save(model, tmp_path / "m")
    again = fastrnn.load(tmp_path / "m")
    assert again[1].layout_batch_first is True
    x = np.random.default_rng(1).standard_normal((6, 4, 3))
    np.testing.assert_array_equal(again.eval().forward(x), model.eval().forward(x))


def test_lists_of_sequences_into_forward_are_refused_with_directions():
    seqs = [np.zeros((5, 3), np.float32) for _ in range(4)]
    ragged = [np.zeros((n, 3), np.float32) for n in (5, 2, 7)]
    model = fastrnn.Sequential([L.LSTM(3, 5), L.LastStep(), L.Dense(5, 1)])
    with pytest.raises(ValueError, match=r"list of 4 items.*\(T, B, I\).*np.stack\(x, axis=1\)"
                                         r".*fit / evaluate / predict"):
        model.forward(seqs)
    with pytest.raises(ValueError, match=r"3 sequences of different lengths \(2 to 7 steps\)"
                                         r".*pad_sequences.*lengths="):
        model.forward(ragged)
    for layer in (L.GRU(3, 4, batch_first=True), L.LastStep(batch_first=True)):
        with pytest.raises(ValueError, match=r"\(B, T, .\).*np.stack\(x\)"):
            layer.forward(seqs)
    # what the messages point to works: predict takes the lists as they are
    assert model.predict(seqs).shape == (4, 1) and model.predict(ragged).shape == (3, 1)


def test_errors_inside_a_sequential_name_the_layer():
    model = fastrnn.Sequential([L.LSTM(3, 5), L.Dense(6, 2)])
    with pytest.raises(ValueError, match=r"^layer 1 \(Dense\): x must have last dimension 6"):
        model.forward(np.zeros((4, 2, 3)))
    model = fastrnn.Sequential([L.LSTM(3, 5), L.Dense(5, 2)])
    with pytest.raises(ValueError, match=r"^layer 0 \(LSTM\): x must have input_size = 3"):
        model.forward(np.zeros((4, 2, 7)))
    model.forward(np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match=r"^layer 1 \(Dense\): dy must have"):
        model.backward(np.zeros((4, 2, 3)))


# ----------------------------------------------------------------------------------------
# damaged and crafted model files: every failure is a ModelFileError (issue 12)

def _write_model_file(path, header, arrays):
    blob = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, __fastrnn_config__=blob, **{f"param:{k}": v for k, v in arrays.items()})


def _header(model_entry):
    return {"format": "fastrnn-model", "format_version": 1, "fastrnn_version": "0",
            "model": model_entry}


def test_bit_flips_in_a_model_file_raise_model_file_error(tmp_path):
    path = tmp_path / "m.fastrnn"
    fastrnn.save(fastrnn.Sequential([L.GRU(2, 3), L.Dense(3, 1)]), path)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    # the zip's local headers, the central directory at the end, and bytes anywhere
    spots = list(range(0, 64)) + list(range(len(data) - 400, len(data))) + \
        list(rng.integers(0, len(data), 200))
    loaded = 0
    for pos in spots:
        for bit in (0, 3, 6):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << bit
            target = tmp_path / "d.fastrnn"
            target.write_bytes(bytes(damaged))
            try:
                fastrnn.load(target)
                loaded += 1             # a flip in padding or a float payload may load
            except fastrnn.ModelFileError:
                pass
    assert loaded < len(spots) * 3


@pytest.mark.parametrize("entry, says", [
    ({"class": ["GRU"], "config": {}}, "bad layer entry"),
    ({"class": "GRU", "config": [1, 2]}, "must be a mapping"),
    ({"class": "Sequential", "config": {}}, "cannot build Sequential"),
    ({"class": "Sequential", "config": {"layers": [7]}}, "bad layer entry"),
    ({"class": "Dense", "config": {"in_features": 400000, "out_features": 100000}},
     "asks for parameter 'weight' of shape \\(100000, 400000\\)"),
    ({"class": "LSTM", "config": {"input_size": 3, "hidden_size": 2, "num_layers": 10 ** 6}},
     "more than the 0 elements"),
    ({"class": "Dense", "config": {"in_features": "3", "out_features": 2}}, "in_features"),
])
def test_crafted_configurations_raise_model_file_error(tmp_path, entry, says):
    path = tmp_path / "c.fastrnn"
    _write_model_file(path, _header(entry), {})
    with pytest.raises(fastrnn.ModelFileError, match=says):
        fastrnn.load(path)


def test_deeply_nested_configuration_raises_model_file_error(tmp_path):
    depth = 5000                       # written by hand: json.dumps itself would recurse
    inner = '{"class": "Dense", "config": {"in_features": 1, "out_features": 1}}'
    text = '{"class": "Sequential", "config": {"layers": [' * depth + inner + "]}}" * depth
    header = json.dumps(_header(None)).replace("null", text)
    path = tmp_path / "deep.fastrnn"
    with open(path, "wb") as f:
        np.savez(f, __fastrnn_config__=np.frombuffer(header.encode(), np.uint8))
    with pytest.raises(fastrnn.ModelFileError):
        fastrnn.load(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o027, 0o640), (0o002, 0o664)])
def test_saved_files_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        fastrnn.save(L.GRU(2, 3), tmp_path / "a.fastrnn")
    finally:
        os.umask(old)
    assert (tmp_path / "a.fastrnn").stat().st_mode & 0o777 == mode


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_killed_save_leaves_a_temp_that_the_next_save_removes(tmp_path):
    import signal
    import subprocess
    import sys
    target = tmp_path / "m.fastrnn"
    code = ("import os, signal, numpy as np, fastrnn\n"
            "from fastrnn import layers as L\n"
            "real = np.savez\n"
            "def dying(f, **kw):\n"
            "    f.write(b'partial'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            "np.savez = dying\n"
            f"fastrnn.save(L.GRU(2, 3), {str(target)!r})\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert out.returncode == -signal.SIGKILL
    stale = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].startswith(".m.fastrnn.")
    other = tmp_path / f".other.fastrnn.{os.getpid()}.fastrnn-x.tmp"   # a live process's
    other.write_bytes(b"x")
    fastrnn.save(L.GRU(2, 3), target)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.fastrnn", other.name])
    fastrnn.load(target)
