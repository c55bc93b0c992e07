"""Random recurrent-layer problems and uniform drivers for the functional API and the NumPy
reference (both have the same signatures), shared by the kernel tests.

Cells: "rnn_tanh", "rnn_relu", "lstm", "gru" (reset_after=True), "gru_noreset"."""
import numpy as np

from fastrnn._results import GRUGrads, LSTMGrads, RNNGrads

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_noreset": 3}


def make_problem(cell, seed, shape, bias=True, dtype=np.float64, scale=0.5):
    """Random inputs as a dict with keys x, h0, c0 (LSTM only), w_ih, w_hh, b_ih, b_hh
    (the biases None when bias=False); shape is (T, B, I, H)."""
    t, b, i, h = shape
    G = GATES[cell]
    rng = np.random.default_rng(seed)

    def rnd(*s):
        return (scale * rng.standard_normal(s)).astype(dtype)

    p = dict(x=rnd(t, b, i), h0=rnd(b, h), w_ih=rnd(G * h, i), w_hh=rnd(G * h, h),
             b_ih=rnd(G * h) if bias else None, b_hh=rnd(G * h) if bias else None)
    if cell == "lstm":
        p["c0"] = rnd(b, h)
    return p


def forward(mod, cell, p, lengths=None, reverse=False, **kw):
    """mod.<cell>_forward on problem p (mod: fastrnn.functional or fastrnn.reference);
    returns (y, hT, cT or None, cache)."""
    wts = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    opts = dict(lengths=lengths, reverse=reverse, **kw)
    if cell.startswith("rnn"):
        y, hT, cache = mod.rnn_forward(p["x"], p["h0"], *wts, nonlinearity=cell[4:], **opts)
        return y, hT, None, cache
    if cell == "lstm":
        return mod.lstm_forward(p["x"], p["h0"], p["c0"], *wts, **opts)
    y, hT, cache = mod.gru_forward(p["x"], p["h0"], *wts, reset_after=(cell == "gru"), **opts)
    return y, hT, None, cache


def backward(mod, cell, cache, dy, dhT, dcT=None, **kw):
    """mod.<cell>_backward; returns its gradients namedtuple (type checked)."""
    if cell.startswith("rnn"):
        g = mod.rnn_backward(dy, dhT, cache, **kw)
        assert type(g) is RNNGrads
    elif cell == "lstm":
        g = mod.lstm_backward(dy, dhT, dcT, cache, **kw)
        assert type(g) is LSTMGrads
    else:
        g = mod.gru_backward(dy, dhT, cache, **kw)
        assert type(g) is GRUGrads
    return g


def as_dict(grads):
    """A gradients namedtuple keyed like the problem dict ("dw_ih" -> "w_ih")."""
    return {k[1:]: v for k, v in grads._asdict().items()}
