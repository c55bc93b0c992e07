"""Bad input to the layers, models, initializers and savers: a clear exception naming the
argument, never a crash or a silent wrong result."""
import numpy as np
import pytest

import fastrnn
from fastrnn import init
from fastrnn import layers as L

f32 = np.float32


def lstm():
    return L.LSTM(3, 4, num_layers=2, bidirectional=True)


CONSTRUCTORS = [
    (lambda: L.LSTM(0, 4), ValueError, "input_size must be an integer >= 1"),
    (lambda: L.LSTM(3, 2.5), ValueError, "hidden_size must be an integer >= 1"),
    (lambda: L.GRU(3, 4, num_layers=0), ValueError, "num_layers"),
    (lambda: L.RNN(3, 4, dropout=1.0), ValueError, r"dropout must be a probability in \[0, 1\)"),
    (lambda: L.RNN(3, 4, dropout="a"), ValueError, "dropout"),
    (lambda: L.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "nonlinearity"),
    (lambda: L.RNN(3, 4, bias=1), TypeError, "bias must be True or False"),
    (lambda: L.GRU(3, 4, reset_after="yes"), TypeError, "reset_after"),
    (lambda: L.LSTM(3, 4, dtype=np.float16), TypeError, "dtype must be float32 or float64"),
    (lambda: L.LSTM(3, 4, dtype="int32"), TypeError, "dtype"),
    (lambda: L.LSTM(3, 4, bidirectional=True, merge_mode="max"), ValueError, "merge_mode"),
    (lambda: L.LSTM(3, 4, bidirectional=True, go_backwards=True), ValueError, "go_backwards"),
    (lambda: L.GRU(3, 4, unit_forget_bias=True), ValueError, "unit_forget_bias"),
    (lambda: L.LSTM(3, 4, kernel_initializer="glorot"), ValueError, "kernel_initializer"),
    (lambda: L.LSTM(3, 4, recurrent_initializer=3), ValueError, "recurrent_initializer"),
    (lambda: L.LSTM(3, 4, seed=-1), TypeError, "seed"),
    (lambda: L.LSTM(3, 4, seed="a"), TypeError, "seed"),
    (lambda: L.LSTM(3, 4, batch_first=None), TypeError, "batch_first"),
    (lambda: L.LSTM(3, 4, return_sequences=0), TypeError, "return_sequences"),
    (lambda: L.LSTM(3, 4, stateful="no"), TypeError, "stateful"),
    (lambda: L.Dense(0, 2), ValueError, "in_features"),
    (lambda: L.Dense(2, 2, activation="gelu"), ValueError, "activation"),
    (lambda: L.Embedding(5, 2, padding_idx=5), ValueError, "padding_idx"),
    (lambda: L.Embedding(5, 0), ValueError, "embedding_dim"),
    (lambda: L.Dropout(1.5), ValueError, "p must be a probability"),
    (lambda: L.Pool("min"), ValueError, "mode must be 'mean' or 'max'"),
    (lambda: L.LastStep(batch_first=2), TypeError, "batch_first"),
    (lambda: L.Softmax(axis=1.0), TypeError, "axis must be an int"),
    (lambda: fastrnn.Sequential([np.zeros(2)]), TypeError, "Sequential takes fastrnn layers"),
    (lambda: init.get("nope"), ValueError, "initializer must be one of"),
    (lambda: init.orthogonal((3,), np.random.default_rng(), f32), ValueError, "2-D"),
]


@pytest.mark.parametrize("i", range(len(CONSTRUCTORS)))
def test_constructors(i):
    make, exc, match = CONSTRUCTORS[i]
    with pytest.raises(exc, match=match):
        make()


def _x(T=5, B=2, I=3):
    return np.zeros((T, B, I), f32)


CALLS = [
    (lambda: lstm().forward(np.zeros((5, 3), f32)), ValueError, r"x must be 3-D \(T, B, I\)"),
    (lambda: L.GRU(3, 4, batch_first=True).forward(np.zeros(3, f32)), ValueError,
     r"\(B, T, I\) with batch_first"),
    (lambda: lstm().forward(_x(I=2)), ValueError, "input_size = 3"),
    (lambda: lstm().forward(np.array([[["a"]]])), TypeError, "x must hold numbers"),
    (lambda: lstm().forward(_x(), state=np.zeros((4, 2, 4))), TypeError, r"tuple \(h, c\)"),
    (lambda: lstm().forward(_x(), state=(np.zeros((4, 2, 4)), np.zeros((2, 2, 4)))),
     ValueError, r"state\[1\] \(c\) must have shape \(num_layers \* num_directions, B, H\)"),
    (lambda: L.GRU(3, 4).forward(_x(), state=np.zeros((1, 3, 4))), ValueError,
     r"state must have shape .* = \(1, 2, 4\)"),
    (lambda: lstm().forward(_x(), lengths=[5, 6]), ValueError, r"lengths must be in \[1, T\]"),
    (lambda: lstm().forward(_x(), lengths=[5, 0]), ValueError, "lengths must be in"),
    (lambda: lstm().forward(_x(), lengths=[5]), ValueError, r"lengths must have shape \(B,\)"),
    (lambda: lstm().forward(_x(), lengths=[5.0, 2.0]), TypeError, "lengths must hold integers"),
    (lambda: lstm().forward(_x(), mask=np.ones((5, 3))), ValueError, r"mask must have shape"),
    (lambda: lstm().forward(_x(), mask=np.full((5, 2), 2)), ValueError, "only 0/1"),
    (lambda: lstm().forward(_x(), mask=np.array([["a"] * 2] * 5)), TypeError, "mask must be"),
    (lambda: lstm().forward(_x(), training=1), TypeError, "training must be True or False"),
    (lambda: lstm().backward(np.zeros((5, 2, 8), f32)), RuntimeError, "training mode first"),
    (lambda: L.Dense(3, 2).forward(np.zeros((4, 2), f32)), ValueError,
     r"x must have last dimension 3 \(in_features\)"),
    (lambda: L.Dense(3, 2).forward(np.float32(1)), ValueError, "last dimension"),
    (lambda: L.Dense(3, 2).backward(np.zeros((4, 2), f32)), RuntimeError, "forward call"),
    (lambda: L.Embedding(4, 2).forward([[-1]]), ValueError, "ids must be in"),
    (lambda: L.LastStep().forward(np.zeros((3, 2)), lengths=[1, 1]), ValueError, "3-D"),
    (lambda: L.LastStep().forward(np.zeros((0, 2, 1))), ValueError, "at least one time step"),
    (lambda: L.Pool().forward(np.zeros((3, 2, 1)), lengths=[4, 1]), ValueError, "lengths"),
    (lambda: L.Softmax(axis=3).forward(np.zeros((2, 2))), ValueError, "axis 3 is out of range"),
    (lambda: L.Tanh().forward(np.array(["a"])), TypeError, "x must hold numbers"),
    (lambda: lstm().step(np.zeros(3, f32)), ValueError, "bidirectional"),
    (lambda: L.LSTM(3, 4).step(np.zeros((1, 2), f32)), ValueError, "x_t must have input_size"),
    (lambda: L.LSTM(3, 4).step(np.zeros((1, 1, 3), f32)), ValueError, "x_t must be"),
    (lambda: L.LSTM(3, 4).step(np.zeros((2, 3), f32), state=(np.zeros((1, 2, 4)),
                                                             np.zeros((1, 3, 4)))),
     ValueError, r"state\[1\] \(c\) must have shape"),
    (lambda: lstm().load_state_dict({"weight_ih_l0": np.zeros((16, 3))}), KeyError,
     "missing keys"),
    (lambda: lstm().load_state_dict([1, 2]), TypeError, "state_dict must be a mapping"),
    (lambda: L.GRU(3, 4).load_state_dict(dict(L.GRU(3, 4).state_dict(),
                                              weight_hh_l0=np.zeros((4, 4)))), ValueError,
     r"state_dict\['weight_hh_l0'\] must have shape \(12, 4\)"),
    (lambda: L.GRU(3, 4).load_state_dict(dict(L.GRU(3, 4).state_dict(),
                                              weight_hh_l0=np.full((12, 4), "a"))), TypeError,
     "must hold numbers"),
    (lambda: L.GRU(3, 4).load_state_dict({"x": np.zeros(2)}, strict=True), KeyError,
     "unexpected keys"),
    (lambda: fastrnn.Sequential().forward(np.zeros(2)), ValueError, "no layers"),
    (lambda: fastrnn.Sequential([L.GRU(3, 4)]).forward(_x(), lengths=[5, 5],
                                                       mask=np.ones((5, 2))),
     ValueError, "lengths or mask"),
    (lambda: lstm().train(mode="yes"), TypeError, "mode must be True or False"),
    (lambda: fastrnn.load(__file__, custom_objects=[1]), TypeError,
     "custom_objects must be a dict"),
    (lambda: fastrnn.load(__file__, custom_objects={"X": int}), TypeError,
     r"custom_objects\['X'\] must be a Layer subclass"),
]


@pytest.mark.parametrize("i", range(len(CALLS)))
def test_calls(i):
    call, exc, match = CALLS[i]
    with pytest.raises(exc, match=match):
        call()


def test_backward_checks_dy_and_dstate():
    layer = lstm()
    layer.forward(_x())
    with pytest.raises(ValueError, match=r"dy must have the shape of y, \(5, 2, 8\)"):
        layer.backward(np.zeros((5, 2, 4), f32))
    layer.forward(_x())
    with pytest.raises(ValueError, match=r"dstate\[0\] \(h\) must have shape"):
        layer.backward(None, dstate=(np.zeros((4, 1, 4)), None))
    for cls in (L.Tanh, L.Dropout, L.Pool, L.LastStep):
        lay = cls()
        lay.forward(np.zeros((3, 2, 4)))
        with pytest.raises(ValueError, match="dy must have the shape"):
            lay.backward(np.zeros((7,)))
    d = L.Dense(3, 2)
    d.forward(np.zeros((4, 3), f32))
    with pytest.raises(ValueError, match="dy must have the shape"):
        d.backward(np.zeros((4, 3), f32))
    e = L.Embedding(3, 2)
    e.forward([0, 1])
    with pytest.raises(ValueError, match="dy must have the shape"):
        e.backward(np.zeros((3, 2), f32))


def test_failed_load_state_dict_writes_nothing():
    layer = L.GRU(3, 4, seed=0)
    before = layer.state_dict()
    bad = L.GRU(3, 4, seed=1).state_dict()
    bad["bias_hh_l0"] = np.zeros(5)              # last key wrong: nothing may be written
    with pytest.raises(ValueError):
        layer.load_state_dict(bad)
    for k, v in layer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_non_strict_load_reports_keys():
    layer = L.GRU(3, 4, seed=0)
    sd = layer.state_dict()
    w = sd.pop("weight_ih_l0")
    missing, unexpected = layer.load_state_dict(dict(sd, extra=w), strict=False)
    assert missing == ["weight_ih_l0"] and unexpected == ["extra"]


def test_subclass_must_call_super_init_before_layers():
    class Broken(fastrnn.Model):
        def __init__(self):
            self.rnn = L.RNN(2, 2)

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_nan_inputs_propagate_instead_of_vanishing():
    layer = L.GRU(2, 3)
    x = np.zeros((3, 1, 2), f32)
    x[1, 0, 0] = np.nan
    y, h = layer.forward(x)
    assert np.isnan(y[1:]).all() and np.isnan(h).all() and not np.isnan(y[0]).any()
