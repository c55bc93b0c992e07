"""Property-based tests (hypothesis) of the compiled kernels behind fastrnn.functional.

Each test draws a small random problem: cell variant (Elman tanh / relu, LSTM, GRU with
reset_after True / False), T in 1..6, B in 1..5, I in 1..4, H in 1..5, float64, optional
per-row lengths in 1..T, direction, which biases exist, whether h0 / c0 are given and which
upstream gradients (dy, dhT, dcT) are given.  The properties:

* the kernels equal the NumPy reference (fastrnn.reference) in outputs, final states and
  every gradient, to ~1e-10;
* packed-sequence semantics: outputs past a row's length are exactly 0, and the row's final
  state is exactly its output at its last valid step (forward) or at step 0 (reverse);
* rows are independent: row b run alone (B=1) gives the same y[:, b], hT[b], dx[:, b],
  dh0[b] (and cT, dc0) as in the batch;
* padding invariance: appending garbage time steps beyond every row's length (same
  lengths, larger T) changes neither the valid outputs, the final states, nor any gradient,
  and the extra outputs and input gradients are exactly 0 - in both directions;
* training=False computes the same forward as training=True (also on the chunked path the
  inference mode takes for large B);
* backward is linear in the upstream gradients:
  grads(a*dy1 + dy2, a*dhT1 + dhT2) == a*grads(dy1, dhT1) + grads(dy2, dhT2)
  (one forward per backward, since a cache is single-use).

Every test uses fixed settings with derandomize=True and no example database, so a run is
reproducible and writes nothing to disk.
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrnn import functional as F
from fastrnn import reference as ref

VARIANTS = {  # name -> (cell, G, forward kwargs)
    "rnn_tanh": ("rnn", 1, dict(nonlinearity="tanh")),
    "rnn_relu": ("rnn", 1, dict(nonlinearity="relu")),
    "lstm": ("lstm", 4, {}),
    "gru": ("gru", 3, dict(reset_after=True)),
    "gru_noreset": ("gru", 3, dict(reset_after=False)),
}

TOL = dict(rtol=1e-10, atol=1e-10)


def fixed(max_examples):
    return settings(max_examples=max_examples, deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------------------

class Problem:
    """One drawn problem: arrays in `arrays`, the rest as attributes."""

    def __init__(self, variant, T, B, I, H, lengths, reverse, arrays, upstream):
        self.variant, self.T, self.B, self.I, self.H = variant, T, B, I, H
        self.cell, self.G, self.kw = VARIANTS[variant]
        self.lengths, self.reverse = lengths, reverse
        self.arrays = arrays          # x, h0, c0, w_ih, w_hh, b_ih, b_hh (some may be None)
        self.upstream = upstream      # dy, dhT, dcT (each may be None)

    def __repr__(self):
        shapes = {k: (None if v is None else v.shape) for k, v in self.arrays.items()}
        ups = {k: (None if v is None else v.shape) for k, v in self.upstream.items()}
        return (f"Problem({self.variant}, T={self.T}, B={self.B}, I={self.I}, H={self.H}, "
                f"lengths={None if self.lengths is None else self.lengths.tolist()}, "
                f"reverse={self.reverse}, {shapes}, {ups})")

    def valid(self):
        """(T, B) boolean mask: row b is active at step t."""
        L = np.full(self.B, self.T) if self.lengths is None else self.lengths
        return np.arange(self.T)[:, None] < L[None, :]


@st.composite
def problems(draw, with_lengths=None, T=st.integers(1, 6), B=st.integers(1, 5)):
    """A random problem; with_lengths True/False forces lengths given/absent."""
    variant = draw(st.sampled_from(list(VARIANTS)))
    T, B = draw(T), draw(B)
    I, H = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    has_lengths = draw(st.booleans()) if with_lengths is None else with_lengths
    lengths = None
    if has_lengths:
        dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16]))
        if B <= 8:
            lengths = np.array(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)),
                               dtype=dtype)
        else:   # large batches (chunking test): too many values to draw one by one
            lengths = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(
                1, T + 1, B).astype(dtype)
    reverse = draw(st.booleans())
    bias = draw(st.sampled_from(["both", "none", "ih", "hh"]))
    h0_given, c0_given = draw(st.booleans()), draw(st.booleans())
    dy_given, dhT_given, dcT_given = (draw(st.booleans()) for _ in range(3))
    seed = draw(st.integers(0, 2**32 - 1))

    cell, G, _ = VARIANTS[variant]
    rng = np.random.default_rng(seed)

    def rnd(*shape, scale=0.5):
        return scale * rng.standard_normal(shape)

    arrays = dict(x=rnd(T, B, I), h0=rnd(B, H) if h0_given else None,
                  c0=rnd(B, H) if (cell == "lstm" and c0_given) else None,
                  w_ih=rnd(G * H, I), w_hh=rnd(G * H, H),
                  b_ih=rnd(G * H) if bias in ("both", "ih") else None,
                  b_hh=rnd(G * H) if bias in ("both", "hh") else None)
    upstream = dict(dy=rnd(T, B, H, scale=1) if dy_given else None,
                    dhT=rnd(B, H, scale=1) if dhT_given else None,
                    dcT=rnd(B, H, scale=1) if (cell == "lstm" and dcT_given) else None)
    return Problem(variant, T, B, I, H, lengths, reverse, arrays, upstream)


# ---------------------------------------------------------------------------------------
# driving kernels and reference uniformly
# ---------------------------------------------------------------------------------------

def run_forward(mod, p, arrays=None, lengths="same", **extra):
    """(y, hT, cT or None, cache) from module `mod` (F or ref)."""
    a = p.arrays if arrays is None else arrays
    kw = dict(p.kw, lengths=p.lengths if isinstance(lengths, str) else lengths,
              reverse=p.reverse, **extra)
    w = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if p.cell == "lstm":
        return mod.lstm_forward(a["x"], a["h0"], a["c0"], *w, **kw)
    y, hT, cache = getattr(mod, f"{p.cell}_forward")(a["x"], a["h0"], *w, **kw)
    return y, hT, None, cache


def run_backward(mod, p, cache, upstream=None):
    """Gradients as a dict keyed like Problem.arrays ("x", "h0", "c0", "w_ih", ...)."""
    u = p.upstream if upstream is None else upstream
    if p.cell == "lstm":
        g = mod.lstm_backward(u["dy"], u["dhT"], u["dcT"], cache)
    else:
        g = getattr(mod, f"{p.cell}_backward")(u["dy"], u["dhT"], cache)
    return {k[1:]: v for k, v in g._asdict().items()}


def assert_close(a, b, what, **tol):
    if a is None or b is None:
        assert a is None and b is None, what
        return
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert a.dtype == b.dtype, (what, a.dtype, b.dtype)
    np.testing.assert_allclose(a, b, err_msg=what, **(tol or TOL))


# ---------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------

@fixed(500)
@given(problems())
def test_kernels_match_reference(p):
    y, hT, cT, cache = run_forward(F, p)
    ry, rhT, rcT, rcache = run_forward(ref, p)
    assert_close(y, ry, "y")
    assert_close(hT, rhT, "hT")
    assert_close(cT, rcT, "cT")
    g = run_backward(F, p, cache)
    rg = run_backward(ref, p, rcache)
    assert g.keys() == rg.keys()
    for k in g:
        assert_close(g[k], rg[k], "d" + k)


@fixed(250)
@given(problems(with_lengths=True), st.booleans())
def test_padding_is_zero_and_final_state_is_last_valid_output(p, training):
    y, hT, cT, _ = run_forward(F, p, training=training)
    valid = p.valid()
    assert np.all(y[~valid] == 0)
    last = np.zeros(p.B, int) if p.reverse else p.lengths.astype(int) - 1
    np.testing.assert_array_equal(hT, y[last, np.arange(p.B)])
    if p.cell == "lstm":
        # cT is the cell state after that same step: check it via the reference, which
        # stores it, rather than through y
        np.testing.assert_allclose(cT, run_forward(ref, p)[2], **TOL)


@fixed(250)
@given(problems(), st.data())
def test_rows_are_independent(p, data):
    b = data.draw(st.integers(0, p.B - 1), label="row")
    y, hT, cT, cache = run_forward(F, p)
    g = run_backward(F, p, cache)

    sl = slice(b, b + 1)
    row = dict(p.arrays)
    row["x"] = p.arrays["x"][:, sl]
    for k in ("h0", "c0"):
        if p.arrays[k] is not None:
            row[k] = p.arrays[k][sl]
    up = {"dy": None if p.upstream["dy"] is None else p.upstream["dy"][:, sl],
          "dhT": None if p.upstream["dhT"] is None else p.upstream["dhT"][sl],
          "dcT": None if p.upstream["dcT"] is None else p.upstream["dcT"][sl]}
    lengths = None if p.lengths is None else p.lengths[sl]
    y1, hT1, cT1, cache1 = run_forward(F, p, row, lengths=lengths)
    g1 = run_backward(F, p, cache1, up)

    tol = dict(rtol=1e-12, atol=1e-13)
    assert_close(y1[:, 0], y[:, b], "y", **tol)
    assert_close(hT1[0], hT[b], "hT", **tol)
    assert_close(g1["x"][:, 0], g["x"][:, b], "dx", **tol)
    assert_close(g1["h0"][0], g["h0"][b], "dh0", **tol)
    if p.cell == "lstm":
        assert_close(cT1[0], cT[b], "cT", **tol)
        assert_close(g1["c0"][0], g["c0"][b], "dc0", **tol)


@fixed(250)
@given(problems(), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_padding_invariance(p, extra, seed):
    """Garbage steps appended past every row's length change nothing that is valid.
    The garbage dy there is NaN: dy at inactive positions must not even be read."""
    lengths = np.full(p.B, p.T) if p.lengths is None else p.lengths
    rng = np.random.default_rng(seed)
    T2 = p.T + extra
    big = dict(p.arrays)
    big["x"] = np.concatenate([p.arrays["x"], 1e3 * rng.standard_normal((extra, p.B, p.I))])
    up = dict(p.upstream)
    if up["dy"] is not None:
        up["dy"] = np.concatenate([up["dy"], np.full((extra, p.B, p.H), np.nan)])

    y, hT, cT, cache = run_forward(F, p, lengths=lengths)
    g = run_backward(F, p, cache)
    y2, hT2, cT2, cache2 = run_forward(F, p, big, lengths=lengths)
    g2 = run_backward(F, p, cache2, up)

    assert y2.shape == (T2, p.B, p.H)
    assert np.all(y2[p.T:] == 0)
    assert_close(y2[:p.T], y, "y")
    assert_close(hT2, hT, "hT")
    assert_close(cT2, cT, "cT")
    assert np.all(g2["x"][p.T:] == 0)
    assert_close(g2["x"][:p.T], g["x"], "dx")
    assert g2.keys() == g.keys()
    for k in g.keys() - {"x"}:
        assert_close(g2[k], g[k], "d" + k)


@fixed(250)
@given(problems())
def test_inference_equals_training(p):
    train = run_forward(F, p, training=True)
    infer = run_forward(F, p, training=False)
    assert infer[3] is None
    # same arithmetic in both modes (here the inputs are projected in one GEMM either way);
    # bitwise equal on the machines tried, a hair of slack for other BLAS builds
    for a, b, what in zip(infer[:3], train[:3], ("y", "hT", "cT")):
        assert_close(a, b, what, rtol=1e-14, atol=1e-15)


@fixed(30)
@given(problems(T=st.integers(2, 4), B=st.integers(300, 1100)))
def test_inference_equals_training_chunked(p):
    """With B > 1024 // T (INFER_ROWS in engine/common.pxd) the inference forward projects the
    inputs a few steps at a time (bounded workspace); the results must not change."""
    train = run_forward(F, p, training=True)
    infer = run_forward(F, p, training=False)
    for a, b, what in zip(infer[:3], train[:3], ("y", "hT", "cT")):
        assert_close(a, b, what, rtol=1e-13, atol=1e-14)


@fixed(250)
@given(problems(), st.floats(-3, 3, allow_nan=False), st.integers(0, 2**32 - 1))
def test_backward_is_linear_in_upstream_gradients(p, a, seed):
    rng = np.random.default_rng(seed)
    up1 = p.upstream
    up2 = {k: None if v is None else rng.standard_normal(v.shape) for k, v in up1.items()}
    combo = {k: None if v is None else a * v + up2[k] for k, v in up1.items()}

    g1 = run_backward(F, p, run_forward(F, p)[3], up1)
    g2 = run_backward(F, p, run_forward(F, p)[3], up2)
    g12 = run_backward(F, p, run_forward(F, p)[3], combo)
    for k in g12:
        if g12[k] is None:
            assert g1[k] is None and g2[k] is None
            continue
        expect = a * g1[k] + g2[k]
        scale = 1 + max(np.abs(g1[k]).max(initial=0), np.abs(g2[k]).max(initial=0))
        np.testing.assert_allclose(g12[k], expect, rtol=1e-10, atol=1e-12 * scale,
                                   err_msg="d" + k)
