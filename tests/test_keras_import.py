"""fastrnn.from_keras against real Keras 3 (torch backend, float64) when installed: the
converted model gives Keras's outputs; what it cannot convert yet is refused by name."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import fastrnn  # noqa: E402

layers = keras.layers
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Keras's, not ours


@pytest.fixture(autouse=True)
def float64():
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(old)


MODELS = {
    "lstm-bigru-sum-bilstm": lambda: [
        keras.Input((7, 3)), layers.LSTM(5, return_sequences=True),
        layers.Bidirectional(layers.GRU(4, return_sequences=True), merge_mode="sum"),
        layers.Bidirectional(layers.LSTM(3)), layers.Dense(2, activation="softmax")],
    "simplernn-relu-timedistributed": lambda: [
        keras.Input((6, 2)), layers.SimpleRNN(4, activation="relu", return_sequences=True),
        layers.TimeDistributed(layers.Dense(3)), layers.Activation("tanh"),
        layers.Dropout(0.3)],
    "gru-reset-before-ave": lambda: [
        keras.Input((5, 3)),
        layers.Bidirectional(layers.GRU(4, reset_after=False, return_sequences=True),
                             merge_mode="ave"),
        layers.GRU(2, use_bias=False), layers.Dense(1)],
    "embedding-mul": lambda: [
        keras.Input((8,), dtype="int64"), layers.Embedding(10, 4),
        layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True), merge_mode="mul"),
        layers.Dense(2, activation="relu")],
}


@pytest.mark.parametrize("name", list(MODELS))
def test_converted_model_gives_keras_outputs(name):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(MODELS[name]())
    rng = np.random.default_rng(0)
    shape = model.inputs[0].shape
    if name == "embedding-mul":
        x = rng.integers(0, 10, (4, shape[1]))
    else:
        x = rng.standard_normal((4,) + tuple(shape[1:]))
    want = keras.ops.convert_to_numpy(model(x, training=False))
    converted = fastrnn.from_keras(model)
    assert not converted.training
    got = converted.forward(x)
    # Keras's torch backend computes Dense and SimpleRNN products at about float32 precision
    # here even with float64 weights (its Dense against NumPy's float64 x @ W + b: 1.9e-7);
    # its LSTM and GRU agree with fastrnn's to 1e-16 (test_a_single_layer)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_single_layer():
    keras.utils.set_random_seed(1)
    lstm = layers.LSTM(4, return_sequences=True)
    x = np.random.default_rng(1).standard_normal((2, 5, 3))
    want = keras.ops.convert_to_numpy(lstm(x))
    np.testing.assert_allclose(fastrnn.from_keras(lstm).forward(x), want, rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_layers_agree_to_rounding(kind):
    keras.utils.set_random_seed(2)
    layer = getattr(layers, kind)(4, return_sequences=True)
    x = np.random.default_rng(2).standard_normal((3, 6, 2))
    want = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(fastrnn.from_keras(layer).forward(x), want, rtol=1e-13,
                               atol=1e-14)


@pytest.mark.parametrize("make,what", [
    (lambda: [keras.Input((5, 3)), layers.Masking(), layers.LSTM(2)], "Masking"),
    (lambda: [keras.Input((5,), dtype="int64"), layers.Embedding(4, 2, mask_zero=True),
              layers.LSTM(2)], "mask_zero"),
    (lambda: [keras.Input((5, 3)), layers.LSTM(2, go_backwards=True)], "go_backwards"),
    (lambda: [keras.Input((5, 3)), layers.LSTM(2, activation="relu")], "activations"),
    (lambda: [keras.Input((5, 3)), layers.Conv1D(2, 3)], "Conv1D"),
])
def test_refusals_name_the_layer(make, what):
    model = keras.Sequential(make())
    with pytest.raises(TypeError, match=what):
        fastrnn.from_keras(model)
