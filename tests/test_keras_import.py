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
    old, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    # restoring floatx alone leaves Keras making float64 layers (its cached dtype policy)
    keras.config.set_floatx(old)
    keras.config.set_dtype_policy(policy)


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


# ---- masks and Keras's padded-step semantics ------------------------------------------

def _padded(shape, lengths, seed, value=0.0):
    x = np.random.default_rng(seed).standard_normal(shape)
    for b, n in enumerate(lengths):
        x[b, n:] = value
    return x


LENGTHS = [7, 3, 1, 5]

MASKED = {
    # one-directional layers repeat the last output over padding (zero_output_for_mask=False)
    "masking-lstm-dense": lambda: [
        keras.Input((7, 3)), layers.Masking(), layers.LSTM(4, return_sequences=True),
        layers.Dense(2)],
    # zero_output_for_mask=True, then a last-step GRU
    "zero-output-gru-last": lambda: [
        keras.Input((7, 3)), layers.Masking(),
        layers.LSTM(4, return_sequences=True, zero_output_for_mask=True), layers.GRU(3)],
    # stacked go_backwards: the second walks forward in time; outputs in processing order
    # over the padded axis
    "stacked-go-backwards": lambda: [
        keras.Input((7, 3)), layers.Masking(),
        layers.SimpleRNN(4, go_backwards=True, return_sequences=True),
        layers.GRU(3, go_backwards=True, return_sequences=True)],
    "go-backwards-last": lambda: [
        keras.Input((7, 3)), layers.Masking(), layers.LSTM(4, go_backwards=True)],
    # merge_mode inside every stacked Bidirectional, with masks (zeros at padded steps)
    "stacked-bidirectional-sum": lambda: [
        keras.Input((7, 3)), layers.Masking(),
        layers.Bidirectional(layers.GRU(4, return_sequences=True), merge_mode="sum"),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum"),
        layers.TimeDistributed(layers.Dense(2))],
    "stacked-bidirectional-last": lambda: [
        keras.Input((7, 3)), layers.Masking(mask_value=-1.0),
        layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="mul"),
        layers.Bidirectional(layers.GRU(3, reset_after=False), merge_mode="ave")],
    # Embedding(mask_zero=True)
    "embedding-mask-zero": lambda: [
        keras.Input((7,), dtype="int64"), layers.Embedding(9, 3, mask_zero=True),
        layers.GRU(4, return_sequences=True), layers.Dropout(0.2),
        layers.Bidirectional(layers.LSTM(2)), layers.Dense(2, activation="softmax")],
}


def _masked_input(name, model):
    if name == "embedding-mask-zero":
        ids = np.random.default_rng(3).integers(1, 9, (4, 7))
        for b, n in enumerate(LENGTHS):
            ids[b, n:] = 0
        return ids
    value = -1.0 if name == "stacked-bidirectional-last" else 0.0
    return _padded((4, 7, 3), LENGTHS, 3, value)


@pytest.mark.parametrize("name", list(MASKED))
def test_masked_models_give_keras_outputs_at_every_step(name):
    keras.utils.set_random_seed(4)
    model = keras.Sequential(MASKED[name]())
    x = _masked_input(name, model)
    want = keras.ops.convert_to_numpy(model(x, training=False))
    got = fastrnn.from_keras(model).forward(x)
    assert got.shape == want.shape
    # with a mask Keras runs its generic cell loop, whose products (like its Dense's) are
    # float32-exact on this backend even with float64 weights (measured: up to 2e-8 here)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_go_backwards_outputs_in_processing_order():
    """The issue's case: with a mask, Keras's go_backwards outputs sit at T-len..T-1."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((7, 3)), layers.Masking(),
                              layers.LSTM(2, go_backwards=True, return_sequences=True)])
    x = _padded((4, 7, 3), LENGTHS, 5)
    want = keras.ops.convert_to_numpy(model(x))
    got = fastrnn.from_keras(model).forward(x)
    for b, n in enumerate(LENGTHS):
        assert np.all(want[b, :7 - n] == 0) and np.all(got[b, :7 - n] == 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_functional_chain_model():
    keras.utils.set_random_seed(6)
    inp = keras.Input((7, 3))
    h = layers.Masking()(inp)
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), merge_mode="ave")(h)
    h = layers.GRU(3, go_backwards=True, return_sequences=True)(h)
    out = layers.LSTM(2)(h)
    model = keras.Model(inp, out)
    x = _padded((4, 7, 3), LENGTHS, 6)
    want = keras.ops.convert_to_numpy(model(x))
    converted = fastrnn.from_keras(model)
    assert [type(layer).__name__ for layer in converted] == ["Masking", "LSTM", "GRU", "LSTM"]
    np.testing.assert_allclose(converted.forward(x), want, rtol=1e-6, atol=1e-7)


def test_a_mask_that_is_not_a_prefix_is_refused_when_run():
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((5, 2)), layers.Masking(), layers.LSTM(2)])
    x = _padded((2, 5, 2), [5, 5], 7)
    x[1, 2] = 0.0                        # a padded step inside row 1
    with pytest.raises(ValueError, match="row 1 is not a valid prefix"):
        fastrnn.from_keras(model).forward(x)


def test_converted_masked_model_trains_like_keras_masks():
    """Gradients flow only through the valid steps (padded inputs get no gradient)."""
    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input((7, 3)), layers.Masking(),
                              layers.LSTM(3, return_sequences=True), layers.Dense(1)])
    converted = fastrnn.from_keras(model).train()
    x = _padded((4, 7, 3), LENGTHS, 8)
    y = converted.forward(x)
    dx = converted.backward(np.ones_like(y))
    for b, n in enumerate(LENGTHS):
        assert np.all(dx[b, n:] == 0) and np.any(dx[b, :n] != 0)


@pytest.mark.parametrize("make,what", [
    (lambda: [keras.Input((5, 3), batch_size=2), layers.LSTM(2, stateful=True)], "stateful"),
    (lambda: [keras.Input((5, 3)), layers.LSTM(2, activation="relu")], "activations"),
    (lambda: [keras.Input((5, 3)), layers.Conv1D(2, 3)], "Conv1D"),
])
def test_refusals_name_the_layer(make, what):
    model = keras.Sequential(make())
    with pytest.raises(TypeError, match=what):
        fastrnn.from_keras(model)


def test_functional_models_that_are_not_chains_are_refused():
    a, b = keras.Input((5, 3)), keras.Input((5, 3))
    two_inputs = keras.Model([a, b], layers.Add()([a, b]))
    with pytest.raises(TypeError, match="2 inputs"):
        fastrnn.from_keras(two_inputs)
    inp = keras.Input((5, 3))
    h = layers.LSTM(3, return_sequences=True)(inp)
    branched = keras.Model(inp, layers.Add()([h, layers.GRU(3, return_sequences=True)(inp)]))
    with pytest.raises(TypeError, match="takes 2 tensors"):
        fastrnn.from_keras(branched)


def test_multi_layer_keras_weights_that_would_load_silently_wrong_are_refused():
    with pytest.raises(ValueError, match="alternate"):
        fastrnn.layers.LSTM(3, 2, num_layers=2, go_backwards=True).to_keras_weights()
    with pytest.raises(ValueError, match="merge.*inside every layer"):
        fastrnn.layers.GRU(3, 2, num_layers=2, bidirectional=True,
                           merge_mode="sum").from_keras_weights([])


def test_keras_to_fastrnn_to_onnx_runtime(tmp_path):
    """A masked Keras model -> fastrnn -> ONNX -> ONNX Runtime: Keras's outputs (float32)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastrnn import onnx as fonnx
    keras.utils.set_random_seed(9)
    f32 = dict(dtype="float32")
    model = keras.Sequential([keras.Input((7, 3), dtype="float32"), layers.Masking(**f32),
                              layers.LSTM(4, return_sequences=True, **f32),
                              layers.Bidirectional(layers.GRU(3, **f32), **f32),
                              layers.Dense(2, **f32)])
    x = _padded((4, 7, 3), LENGTHS, 9).astype(np.float32)
    want = keras.ops.convert_to_numpy(model(x))
    fonnx.export(fastrnn.from_keras(model), tmp_path / "k.onnx")
    sess = ort.InferenceSession(str(tmp_path / "k.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(["y"], {"x": x})[0], want, rtol=1e-5, atol=1e-6)
