"""The recurrent layers' layer_norm, input_dropout, recurrent_dropout, weight_drop and zoneout
options: each option and their combinations against finite differences with the masks
fixed, the layer against the functional kernels with the masks it drew, reproducible
counter-based masks independent of the thread count, evaluation mode, streaming, save/load
and bad input."""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn import functional as F
from fastrnn import layers
from gradcheck import check_layer

CLASSES = {"RNN": layers.RNN, "LSTM": layers.LSTM, "GRU": layers.GRU}

OPTIONS = {
    "layer_norm": dict(layer_norm=True),
    "input_dropout": dict(input_dropout=0.3),
    "recurrent_dropout": dict(recurrent_dropout=0.3),
    "weight_drop": dict(weight_drop=0.4),
    "zoneout": dict(zoneout=0.3),
    "ln+rdrop+zoneout": dict(layer_norm=True, recurrent_dropout=0.25, zoneout=0.2),
    "all": dict(layer_norm=True, input_dropout=0.2, recurrent_dropout=0.25, weight_drop=0.3,
                zoneout=0.2),
}


def combos():
    for cls in CLASSES:
        for name, opt in OPTIONS.items():
            if cls == "RNN" and opt.get("layer_norm"):
                continue
            yield cls, name


COMBOS = list(combos())


def fixed_masks(layer, counter=1):
    """Every training call draws the same masks (what a finite-difference check needs)."""
    layer._mask_generator = lambda: np.random.Generator(
        np.random.Philox(key=layer._mask_key, counter=counter << 64))
    return layer


@pytest.mark.parametrize("shape", ["one", "stacked"])
@pytest.mark.parametrize("cls,opt", COMBOS, ids=[f"{c}-{o}" for c, o in COMBOS])
def test_gradients_match_finite_differences(cls, opt, shape):
    rng = np.random.default_rng(0)
    kw = dict(OPTIONS[opt])
    if shape == "stacked":
        kw.update(num_layers=2, bidirectional=True, dropout=0.0)
    layer = fixed_masks(CLASSES[cls](3, 5, dtype=np.float64, seed=1, **kw))
    for name, p in layer.parameters().items():       # LayerNorm gains/biases off 1/0
        if name.startswith("ln_"):
            p += 0.2 * rng.standard_normal(p.shape)
    x = rng.standard_normal((6, 4, 3))
    lengths = np.array([6, 2, 5, 1]) if shape == "stacked" else None

    def run(layer, x):
        return layer.forward(x, lengths=lengths)[0]
    check_layer(layer, x, run, rng, n_entries=8)


@pytest.mark.parametrize("cls", list(CLASSES))
def test_layer_runs_the_kernels_with_the_masks_it_drew(cls):
    """The layer's training forward is the functional call on x * input mask, W_hh * weight
    mask, with its recurrent mask and zoneout masks: drawn again here from the same key and
    counter, in the layer's order."""
    kw = dict(input_dropout=0.3, recurrent_dropout=0.2, weight_drop=0.25, zoneout=0.3)
    layer = CLASSES[cls](3, 6, dtype=np.float64, seed=5, **kw)
    x = np.random.default_rng(1).standard_normal((5, 4, 3))
    y = layer.forward(x)[0]
    gen = np.random.Generator(np.random.Philox(key=layer._mask_key, counter=1 << 64))
    reg = layer._regularizers(gen, 5, 4, 3)
    w_ih, w_hh, b_ih, b_hh = layer._weights(0, 0)
    args = dict(recurrent_mask=reg["recurrent_mask"], zoneout_h=reg["zoneout_h"])
    assert reg["in_mask"].shape == (4, 3) and reg["w_mask"].shape == w_hh.shape
    xm, wm = x * reg["in_mask"], w_hh * reg["w_mask"]
    if cls == "LSTM":
        expect = F.lstm_forward(xm, None, None, w_ih, wm, b_ih, b_hh,
                                zoneout_c=reg["zoneout_c"], **args)[0]
    elif cls == "GRU":
        expect = F.gru_forward(xm, None, w_ih, wm, b_ih, b_hh, **args)[0]
    else:
        expect = F.rnn_forward(xm, None, w_ih, wm, b_ih, b_hh, **args)[0]
    np.testing.assert_array_equal(y, expect)


def test_masks_have_the_documented_statistics():
    layer = layers.LSTM(8, 64, input_dropout=0.25, recurrent_dropout=0.5, weight_drop=0.4,
                        zoneout=(0.1, 0.6), seed=0)
    reg = layer._regularizers(layer._mask_generator(), 50, 32, 8)
    for key, p in (("in_mask", 0.25), ("recurrent_mask", 0.5), ("w_mask", 0.4)):
        m = reg[key]
        assert set(np.unique(m)) <= {0.0, np.float32(1 / (1 - p))}
        assert abs((m == 0).mean() - p) < 0.05, key
        assert abs(m.mean() - 1) < 0.1, key
    assert abs(reg["zoneout_h"].mean() - 0.1) < 0.01
    assert abs(reg["zoneout_c"].mean() - 0.6) < 0.01
    assert reg["zoneout_h"].shape == (50, 32, 64)


def test_masks_are_reproducible_and_change_between_calls():
    x = np.random.default_rng(2).standard_normal((6, 3, 4)).astype(np.float32)
    kw = dict(recurrent_dropout=0.3, zoneout=0.2, input_dropout=0.2)
    a, b = (layers.GRU(4, 8, seed=11, **kw) for _ in range(2))
    ya = [a.forward(x)[0] for _ in range(3)]
    yb = [b.forward(x)[0] for _ in range(3)]
    for u, v in zip(ya, yb):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(ya[0], ya[1])             # a new mask per training call


def test_masks_do_not_depend_on_the_thread_count():
    from fastrnn.engine.threads import using
    x = np.random.default_rng(3).standard_normal((6, 9, 4))
    out = {}
    for n in (1, 2, 3):
        with using(n):
            layer = layers.LSTM(4, 40, dtype=np.float64, seed=4, layer_norm=True,
                                recurrent_dropout=0.3, zoneout=(0.2, 0.3), weight_drop=0.2,
                                input_dropout=0.1, num_layers=2, bidirectional=True)
            y = layer.forward(x)[0]
            dx = layer.backward(np.ones_like(y))
            out[n] = [y, dx] + [g.copy() for g in layer.grads.values()]
    for n in (2, 3):
        for u, v in zip(out[n], out[1]):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("cls", list(CLASSES))
def test_evaluation_applies_no_dropout_and_the_zoneout_expectation(cls):
    x = np.random.default_rng(4).standard_normal((5, 3, 4))
    reg = layers.__dict__[cls](4, 6, dtype=np.float64, seed=3, input_dropout=0.5,
                               recurrent_dropout=0.5, weight_drop=0.5)
    plain = layers.__dict__[cls](4, 6, dtype=np.float64, seed=3)
    plain.load_state_dict(reg.state_dict())
    reg.eval()
    plain.eval()
    np.testing.assert_array_equal(reg.forward(x)[0], plain.forward(x)[0])
    z = layers.__dict__[cls](4, 6, dtype=np.float64, seed=3, zoneout=0.3).eval()
    z.load_state_dict(plain.state_dict())
    from fastrnn import reference as R
    cell = {"RNN": "rnn_tanh", "LSTM": "lstm", "GRU": "gru"}[cls]
    ref = R.variant_forward(cell, x, None, None, *plain._weights(0, 0), zoneout_h=0.3,
                            zoneout_c=0.3 if cls == "LSTM" else None)[0]
    np.testing.assert_allclose(z.forward(x)[0], ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kw", [dict(layer_norm=True), dict(zoneout=(0.2, 0.4)),
                                dict(layer_norm=True, zoneout=0.1, num_layers=2)],
                         ids=["ln", "zoneout", "ln-zoneout-2layers"])
def test_streaming_steps_match_the_sequence(kw):
    layer = layers.LSTM(3, 7, dtype=np.float64, seed=2, **kw).eval()
    x = np.random.default_rng(5).standard_normal((6, 2, 3))
    y, (h, c) = layer.forward(x)
    state, ys = None, []
    for t in range(6):
        yt, state = layer.step(x[t], state)
        ys.append(yt)
    np.testing.assert_allclose(np.stack(ys), y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(state[1], c, rtol=1e-12, atol=1e-13)
    y1, _ = layer.step(x[0, 0])                   # one sample, 1-D
    np.testing.assert_allclose(y1, ys[0][0] * 0 + layer.step(x[0, :1])[0][0])


def test_parameters_save_and_load(tmp_path):
    layer = layers.LSTM(3, 5, num_layers=2, bidirectional=True, layer_norm=True,
                        layer_norm_eps=1e-4, zoneout=(0.1, 0.2), recurrent_dropout=0.3,
                        weight_drop=0.1, input_dropout=0.05, seed=0)
    names = set(layer.parameters())
    for sfx in ("_l0", "_l1_reverse"):
        assert {"ln_ih_weight" + sfx, "ln_hh_bias" + sfx, "ln_c_weight" + sfx} <= names
    assert layer.parameters()["ln_ih_weight_l0"].shape == (20,)
    assert np.all(layer.parameters()["ln_c_weight_l1"] == 1)
    assert np.all(layer.parameters()["ln_c_bias_l1"] == 0)
    for p in layer.parameters().values():
        p += 0.01
    model = fr.Sequential([layer])
    fr.save(model, tmp_path / "m.fastrnn")
    back = fr.load(tmp_path / "m.fastrnn")
    got = back.layers[0]
    assert (got.layer_norm, got.layer_norm_eps, got.zoneout_h, got.zoneout_c,
            got.recurrent_dropout, got.weight_drop, got.input_dropout) == (
        True, 1e-4, 0.1, 0.2, 0.3, 0.1, 0.05)
    x = np.random.default_rng(6).standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(got.eval().forward(x)[0], layer.eval().forward(x)[0])


def test_training_a_layer_norm_lstm_reduces_the_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 12, 2)).astype(np.float32)
    y = x.sum(axis=1)[:, :1].astype(np.float32)
    model = fr.Sequential([layers.LSTM(2, 16, batch_first=True, return_sequences=False,
                                       return_state=False, layer_norm=True,
                                       recurrent_dropout=0.1, zoneout=0.05, seed=1),
                           layers.Dense(16, 1, seed=2)])
    hist = model.fit(x, y, loss="mse", optimizer=fr.optim.Adam(model.parameters(), lr=1e-2),
                     epochs=15, batch_size=16, verbose=0, seed=0)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]


def test_keras_weights_refused_only_with_layer_norm():
    with pytest.raises(ValueError, match="Keras's LSTM has no ln_ih_weight"):
        layers.LSTM(3, 4, layer_norm=True).to_keras_weights()
    w = layers.LSTM(3, 4, recurrent_dropout=0.2, zoneout=0.1).to_keras_weights()
    assert len(w) == 3


# ---- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw,match", [
    ("RNN", dict(layer_norm=True), "layer_norm=True is for LSTM and GRU layers"),
    ("LSTM", dict(layer_norm=True, peephole=True), "cannot be combined with peephole=True"),
    ("LSTM", dict(zoneout=0.1, proj_size=2), "cannot be combined with proj_size"),
    ("LSTM", dict(recurrent_dropout=0.1, peephole=True), "cannot be combined with peephole"),
    ("GRU", dict(layer_norm=True, reset_after=False), "cannot be combined with reset_after"),
    ("GRU", dict(zoneout=(0.1, 0.2)), "zoneout=\\(z_h, z_c\\) is for the LSTM"),
    ("LSTM", dict(zoneout=(0.1, 0.2, 0.3)), "zoneout must be a probability or a pair"),
    ("LSTM", dict(zoneout=(0.1, 1.0)), "zoneout\\[1\\] \\(z_c\\) must be a probability"),
    ("LSTM", dict(zoneout=1.0), "zoneout must be a probability in \\[0, 1\\)"),
    ("GRU", dict(recurrent_dropout=-0.1), "recurrent_dropout must be a probability"),
    ("RNN", dict(input_dropout=1), "input_dropout must be a probability"),
    ("LSTM", dict(weight_drop="0.5"), "weight_drop must be a probability"),
    ("LSTM", dict(layer_norm=1), "layer_norm must be True or False"),
    ("LSTM", dict(layer_norm=True, layer_norm_eps=0), "layer_norm_eps must be a positive"),
])
def test_bad_options(cls, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CLASSES[cls](3, 4, **kw)


def test_combinations_that_work_with_peephole_and_projection():
    """Input dropout and DropConnect happen outside the kernels: they work with every cell."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 3))
    for kw in (dict(peephole=True), dict(proj_size=2)):
        layer = fixed_masks(layers.LSTM(3, 4, dtype=np.float64, seed=0, input_dropout=0.3,
                                        weight_drop=0.3, **kw))
        check_layer(layer, x, lambda l, x: l.forward(x)[0], rng, n_entries=6)
