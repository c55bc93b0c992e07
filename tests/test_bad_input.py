"""Bad, degenerate and hostile input to the public API (fastrnn.functional).

One test per validation rule, parametrized over the cells the rule applies to ("rnn", "lstm",
"gru") and over float64 and float32.  Each test checks the exception TYPE and, with
``pytest.raises(match=...)``, that the message names the offending argument and shows what
was expected and what was received.  The rules come from the module docstring and the
validation helpers of fastrnn/functional.py:

* wrong *kind* of value (None where an array is required, non-float dtype, non-bool flag,
  not-an-integer ``lengths``, an object that is not a cache) -> TypeError;
* wrong *shape* or *value* (rank, sizes, ``lengths`` outside ``1..T``, unknown
  ``nonlinearity``, cache already used or discarded with ``training=False``, a problem too
  large for 32-bit BLAS) -> ValueError;
* a cache that comes from another cell -> TypeError.

Besides the errors:

* a failed backward validation must not consume the cache;
* NaN / inf data is not an error: it must propagate (a NaN input gives NaN outputs for its
  row and leaves the other rows alone), and nothing may crash;
* B == 0 and T == 0 are documented to give empty results (with T == 0 the final state is
  the initial one and backward passes dhT to dh0), forward and backward;
* problems too large for 32-bit BLAS indices are refused with ValueError *before* anything
  big is allocated; the huge inputs are zero-stride views (np.broadcast_to), so the tests
  themselves allocate nothing big, and an address-space limit guards the one case run in a
  subprocess.
"""
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as ref

# distinct sizes, so a message that prints the wrong one cannot pass by coincidence
T, B, I, H = 6, 4, 3, 5
CELLS = {"rnn": 1, "lstm": 4, "gru": 3}          # cell -> number of gate blocks G
GATE_ROWS = {1: "H", 3: "3*H", 4: "4*H"}          # how the messages spell G*H
DTYPES = [np.float64, np.float32]
INT_MAX = 2**31 - 1

cells = pytest.mark.parametrize("cell", list(CELLS))
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])


# ---------------------------------------------------------------------------------------
# driving the three cells uniformly
# ---------------------------------------------------------------------------------------

def make_args(cell, dtype, T=T, B=B, I=I, H=H, seed=0):
    """Valid arguments as a dict (keys as the forward parameters)."""
    rng = np.random.default_rng(seed)
    G = CELLS[cell]

    def rnd(*shape):
        return (0.5 * rng.standard_normal(shape)).astype(dtype)

    args = dict(x=rnd(T, B, I), h0=rnd(B, H), w_ih=rnd(G * H, I), w_hh=rnd(G * H, H),
                b_ih=rnd(G * H), b_hh=rnd(G * H))
    if cell == "lstm":
        args["c0"] = rnd(B, H)
    return args


def forward(cell, args, **kw):
    """The cell's forward; returns (y, hT, cT or None, cache)."""
    w = (args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"])
    if cell == "rnn":
        y, hT, cache = F.rnn_forward(args["x"], args["h0"], *w, **kw)
        return y, hT, None, cache
    if cell == "lstm":
        return F.lstm_forward(args["x"], args["h0"], args["c0"], *w, **kw)
    y, hT, cache = F.gru_forward(args["x"], args["h0"], *w, **kw)
    return y, hT, None, cache


def backward(cell, cache, dy=None, dhT=None, dcT=None):
    if cell == "rnn":
        return F.rnn_backward(dy, dhT, cache)
    if cell == "lstm":
        return F.lstm_backward(dy, dhT, dcT, cache)
    return F.gru_backward(dy, dhT, cache)


def esc(s):
    return re.escape(s)


def gate_rows(cell):
    return GATE_ROWS[CELLS[cell]]


# ---------------------------------------------------------------------------------------
# x
# ---------------------------------------------------------------------------------------

@cells
@dtypes
@pytest.mark.parametrize("shape", [(T, B * I), (T, B, I, 1), (T,), ()],
                         ids=["2d", "4d", "1d", "0d"])
def test_x_wrong_rank(cell, dtype, shape):
    args = make_args(cell, dtype)
    args["x"] = np.zeros(shape, dtype)
    with pytest.raises(ValueError, match=esc(f"x must be 3-D (T, B, I), time-major, got "
                                             f"shape {shape}")):
        forward(cell, args)


BAD_DTYPES = [np.int64, np.int32, np.uint8, np.bool_, np.complex128, np.complex64, object,
              "U3", "S3"]
if np.dtype(np.longdouble).itemsize > 8:
    BAD_DTYPES.append(np.longdouble)      # a float, but not one the kernels compute in


@cells
@dtypes
@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_x_non_float_dtype(cell, dtype, bad):
    args = make_args(cell, dtype)
    args["x"] = np.ones((T, B, I), dtype=bad) if np.dtype(bad).kind not in "US" \
        else np.full((T, B, I), "abc", dtype=bad)
    with pytest.raises(TypeError, match=esc(f"x must hold float16, float32 or float64 data, "
                                            f"got dtype {np.dtype(bad)}")):
        forward(cell, args)


@cells
@dtypes
def test_x_none(cell, dtype):
    args = make_args(cell, dtype)
    args["x"] = None
    with pytest.raises(TypeError, match=esc("x must be an array, got None")):
        forward(cell, args)


@cells
@dtypes
def test_x_list_of_strings(cell, dtype):
    args = make_args(cell, dtype)
    args["x"] = [[["a", "b", "c"]]]
    with pytest.raises(TypeError, match=r"x must hold float16, float32 or float64 data, "
                                        r"got dtype <U1"):
        forward(cell, args)


@cells
@dtypes
def test_x_ragged_nested_list(cell, dtype):
    # not convertible to an array at all: still a TypeError naming x
    args = make_args(cell, dtype)
    args["x"] = [[[1.0, 2.0]], [[1.0]]]
    with pytest.raises(TypeError, match=r"^x must be array-like, got list"):
        forward(cell, args)


@cells
@dtypes
def test_x_zero_input_size(cell, dtype):
    args = make_args(cell, dtype, I=0)
    with pytest.raises(ValueError, match=esc("x must have input size I >= 1 (x.shape[2]), "
                                             "got 0")):
        forward(cell, args)


# ---------------------------------------------------------------------------------------
# initial states
# ---------------------------------------------------------------------------------------

def _state_params():
    return [(cell, s) for cell in CELLS for s in (("h0", "c0") if cell == "lstm" else ("h0",))]


@pytest.mark.parametrize("cell,state", _state_params())
@dtypes
@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (1, B, H), (H, B), (B * H,)],
                         ids=["H+1", "B+1", "3d", "transposed", "flat"])
def test_state_wrong_shape(cell, state, dtype, shape):
    args = make_args(cell, dtype)
    args[state] = np.zeros(shape, dtype)
    with pytest.raises(ValueError, match=esc(f"{state} must have shape (B, H) = ({B}, {H}), "
                                             f"got {shape}")):
        forward(cell, args)


@pytest.mark.parametrize("cell,state", _state_params())
@dtypes
@pytest.mark.parametrize("bad", [np.int64, np.complex128, np.bool_, object],
                         ids=lambda d: np.dtype(d).name)
def test_state_wrong_dtype(cell, state, dtype, bad):
    args = make_args(cell, dtype)
    args[state] = np.ones((B, H), dtype=bad)
    with pytest.raises(TypeError, match=esc(f"{state} must hold float16, float32 or float64 "
                                            f"data, got dtype {np.dtype(bad)}")):
        forward(cell, args)


# ---------------------------------------------------------------------------------------
# weights and biases
# ---------------------------------------------------------------------------------------

@cells
@dtypes
@pytest.mark.parametrize("which", ["wrong_I", "wrong_gate_rows", "transposed", "1d", "3d"])
def test_w_ih_wrong_shape(cell, dtype, which):
    G = CELLS[cell]
    shape = {"wrong_I": (G * H, I + 1),
             "wrong_gate_rows": ((G + 1) * H, I),
             "transposed": (I, G * H),
             "1d": (G * H * I,),
             "3d": (G, H, I)}[which]
    args = make_args(cell, dtype)
    args["w_ih"] = np.zeros(shape, dtype)
    with pytest.raises(ValueError, match=esc(f"w_ih must have shape ({gate_rows(cell)}, I) = "
                                             f"({G * H}, {I}), got {shape}")):
        forward(cell, args)


@cells
@dtypes
@pytest.mark.parametrize("which", ["square", "H+1_cols", "wrong_gate_rows", "1d", "3d"])
def test_w_hh_wrong_shape(cell, dtype, which):
    G = CELLS[cell]
    shape = {"square": (H, H) if G > 1 else (2 * H, H),     # (H, H) is right for the RNN
             "H+1_cols": (G * H, H + 1),
             "wrong_gate_rows": ((G + 1) * H, H),
             "1d": (G * H,),
             "3d": (G, H, H)}[which]
    args = make_args(cell, dtype)
    args["w_hh"] = np.zeros(shape, dtype)
    with pytest.raises(ValueError, match=esc(f"w_hh must have shape ({gate_rows(cell)}, H) "
                                             f"with H >= 1, got {shape}")):
        forward(cell, args)


@cells
@dtypes
@pytest.mark.parametrize("name", ["b_ih", "b_hh"])
@pytest.mark.parametrize("which", ["short", "long", "row", "column", "scalar"])
def test_bias_wrong_shape(cell, dtype, name, which):
    GH = CELLS[cell] * H
    shape = {"short": (GH - 1,), "long": (GH + 1,), "row": (1, GH), "column": (GH, 1),
             "scalar": ()}[which]
    args = make_args(cell, dtype)
    args[name] = np.zeros(shape, dtype)
    with pytest.raises(ValueError, match=esc(f"{name} must have shape ({gate_rows(cell)},) "
                                             f"= ({GH},), got {shape}")):
        forward(cell, args)


@cells
@dtypes
@pytest.mark.parametrize("name", ["w_ih", "w_hh", "b_ih", "b_hh"])
@pytest.mark.parametrize("bad", [np.int64, np.complex128], ids=lambda d: np.dtype(d).name)
def test_parameter_wrong_dtype(cell, dtype, name, bad):
    args = make_args(cell, dtype)
    args[name] = np.ones(args[name].shape, dtype=bad)
    with pytest.raises(TypeError, match=esc(f"{name} must hold float16, float32 or float64 "
                                            f"data, got dtype {np.dtype(bad)}")):
        forward(cell, args)


@cells
@dtypes
@pytest.mark.parametrize("name", ["w_ih", "w_hh"])
def test_weight_none(cell, dtype, name):
    # the biases may be None (no bias), the weights may not
    args = make_args(cell, dtype)
    args[name] = None
    with pytest.raises(TypeError, match=rf"^{name} must be an array.*got None"):
        forward(cell, args)


@cells
@dtypes
def test_zero_hidden_size(cell, dtype):
    args = make_args(cell, dtype, H=0)
    with pytest.raises(ValueError, match=esc(f"w_hh must have shape ({gate_rows(cell)}, H) "
                                             f"with H >= 1, got (0, 0)")):
        forward(cell, args)


# ---------------------------------------------------------------------------------------
# lengths
# ---------------------------------------------------------------------------------------

@cells
@dtypes
@pytest.mark.parametrize("bad", [np.float64, np.float32, np.bool_, np.complex128, object],
                         ids=lambda d: np.dtype(d).name)
def test_lengths_not_integer(cell, dtype, bad):
    args = make_args(cell, dtype)
    lengths = np.full(B, T).astype(bad)
    with pytest.raises(TypeError, match=esc(f"lengths must hold integers, got dtype "
                                            f"{np.dtype(bad)}")):
        forward(cell, args, lengths=lengths)


@cells
@dtypes
@pytest.mark.parametrize("shape", [(B + 1,), (B - 1,), (B, 1), (1, B), ()],
                         ids=["B+1", "B-1", "column", "row", "scalar"])
def test_lengths_wrong_shape(cell, dtype, shape):
    args = make_args(cell, dtype)
    lengths = np.full(shape, 2, dtype=np.int64)
    with pytest.raises(ValueError, match=esc(f"lengths must have shape (B,) = ({B},), got "
                                             f"{shape}")):
        forward(cell, args, lengths=lengths)


@cells
@dtypes
@pytest.mark.parametrize("values,lo,hi", [([0, T, 3, 2], 0, T),
                                          ([-2, T, 3, 2], -2, T),
                                          ([1, T + 1, 3, 2], 1, T + 1),
                                          ([0, 0, 0, 0], 0, 0)],
                         ids=["zero", "negative", "above_T", "all_zero"])
@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, list], ids=["i64", "i32", "list"])
def test_lengths_out_of_range(cell, dtype, values, lo, hi, int_dtype):
    args = make_args(cell, dtype)
    lengths = values if int_dtype is list else np.array(values, dtype=int_dtype)
    with pytest.raises(ValueError, match=esc(f"lengths must be in [1, T] = [1, {T}], got "
                                             f"values from {lo} to {hi}")):
        forward(cell, args, lengths=lengths)


# ---------------------------------------------------------------------------------------
# flags
# ---------------------------------------------------------------------------------------

@dtypes
@pytest.mark.parametrize("value", ["sigmoid", "Tanh", "", None])
def test_rnn_bad_nonlinearity(dtype, value):
    args = make_args("rnn", dtype)
    with pytest.raises(ValueError, match=esc(f"nonlinearity must be 'tanh' or 'relu', got "
                                             f"{value!r}")):
        forward("rnn", args, nonlinearity=value)


@cells
@dtypes
@pytest.mark.parametrize("flag", ["reverse", "training"])
@pytest.mark.parametrize("value", ["yes", 1, 0, None, 1.0, np.int64(1)],
                         ids=["str", "one", "zero", "None", "float", "np_int"])
def test_flag_not_bool(cell, dtype, flag, value):
    args = make_args(cell, dtype)
    with pytest.raises(TypeError, match=esc(f"{flag} must be True or False, got {value!r}")):
        forward(cell, args, **{flag: value})


@dtypes
@pytest.mark.parametrize("value", [None, "yes", 1, 0],
                         ids=["None", "str", "one", "zero"])
def test_gru_reset_after_not_bool(dtype, value):
    args = make_args("gru", dtype)
    with pytest.raises(TypeError, match=esc(f"reset_after must be True or False, got "
                                            f"{value!r}")):
        forward("gru", args, reset_after=value)


@cells
@dtypes
def test_numpy_bools_are_accepted(cell, dtype):
    args = make_args(cell, dtype)
    a = forward(cell, args, reverse=np.bool_(True), training=np.bool_(False))
    b = forward(cell, args, reverse=True, training=False)
    np.testing.assert_array_equal(a[0], b[0])


# ---------------------------------------------------------------------------------------
# backward: the cache
# ---------------------------------------------------------------------------------------

@cells
@dtypes
def test_backward_cache_none_from_inference(cell, dtype):
    args = make_args(cell, dtype)
    cache = forward(cell, args, training=False)[3]
    assert cache is None
    with pytest.raises(ValueError, match=rf"cache is None: {cell}_forward ran with "
                                         rf"training=False"):
        backward(cell, cache)


@pytest.mark.parametrize("cell,other", [(c, o) for c in CELLS for o in CELLS if c != o])
@dtypes
def test_backward_cache_of_another_cell(cell, other, dtype):
    cache = forward(other, make_args(other, dtype))[3]
    with pytest.raises(TypeError, match=esc(f"cache comes from {other}_forward; {cell}_backward "
                                            f"needs the cache of {cell}_forward")):
        backward(cell, cache)
    # and the rejected cache is still good for its own cell
    backward(other, cache, dy=np.ones((T, B, H), dtype))


@cells
@dtypes
@pytest.mark.parametrize("obj", [object(), {"x": 1}, "cache", 3, (1, 2)],
                         ids=["object", "dict", "str", "int", "tuple"])
def test_backward_cache_wrong_type(cell, dtype, obj):
    with pytest.raises(TypeError, match=esc(f"cache must be the cache returned by "
                                            f"{cell}_forward, got {type(obj).__name__}")):
        backward(cell, obj)


@cells
@dtypes
def test_backward_reference_cache_rejected(cell, dtype):
    # the NumPy reference's dict cache is not interchangeable with the kernels' cache
    args = make_args(cell, dtype)
    w = (args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"])
    if cell == "lstm":
        cache = ref.lstm_forward(args["x"], args["h0"], args["c0"], *w)[3]
    else:
        cache = getattr(ref, f"{cell}_forward")(args["x"], args["h0"], *w)[2]
    with pytest.raises(TypeError, match=rf"cache must be the cache returned by {cell}_forward, "
                                        rf"got dict"):
        backward(cell, cache)


@cells
@dtypes
def test_backward_cache_reused(cell, dtype):
    cache = forward(cell, make_args(cell, dtype))[3]
    backward(cell, cache, dy=np.ones((T, B, H), dtype))
    with pytest.raises(ValueError, match=r"cache was already used by a backward call"):
        backward(cell, cache, dy=np.ones((T, B, H), dtype))
    with pytest.raises(ValueError, match=r"cache was already used by a backward call"):
        backward(cell, cache)


# ---------------------------------------------------------------------------------------
# backward: upstream gradients
# ---------------------------------------------------------------------------------------

def _grad_params():
    out = []
    for cell in CELLS:
        for name in (("dy", "dhT", "dcT") if cell == "lstm" else ("dy", "dhT")):
            out.append((cell, name))
    return out


def _bad_grad_shapes(name):
    if name == "dy":
        return [(T, B, H + 1), (T + 1, B, H), (T, B + 1, H), (B, H), (T * B, H), (1, T, B, H)]
    return [(B, H + 1), (B + 1, H), (1, B, H), (H, B), (B * H,)]


@pytest.mark.parametrize("cell,name", _grad_params())
@dtypes
def test_backward_gradient_wrong_shape(cell, name, dtype):
    expected = "(T, B, H) = " + str((T, B, H)) if name == "dy" else f"(B, H) = ({B}, {H})"
    for shape in _bad_grad_shapes(name):
        cache = forward(cell, make_args(cell, dtype))[3]
        grads = {name: np.ones(shape, dtype)}
        with pytest.raises(ValueError, match=esc(f"{name} must have shape {expected}, got "
                                                 f"{shape}")):
            backward(cell, cache, **grads)
        # validation failed before anything ran: the cache is still usable
        assert not cache.consumed
        backward(cell, cache)


@pytest.mark.parametrize("cell,name", _grad_params())
@dtypes
@pytest.mark.parametrize("bad", [np.int64, np.bool_, np.complex128, object],
                         ids=lambda d: np.dtype(d).name)
def test_backward_gradient_wrong_dtype(cell, name, dtype, bad):
    cache = forward(cell, make_args(cell, dtype))[3]
    shape = (T, B, H) if name == "dy" else (B, H)
    with pytest.raises(TypeError, match=esc(f"{name} must hold float16, float32 or float64 "
                                            f"data, got dtype {np.dtype(bad)}")):
        backward(cell, cache, **{name: np.ones(shape, dtype=bad)})
    backward(cell, cache)       # not consumed by the failed call


@cells
@dtypes
def test_failed_backward_does_not_change_result(cell, dtype):
    """A rejected backward call leaves the cache intact: the next call gives the same
    gradients as a fresh forward + backward."""
    args = make_args(cell, dtype)
    dy = np.random.default_rng(1).standard_normal((T, B, H)).astype(dtype)
    cache = forward(cell, args)[3]
    with pytest.raises(ValueError):
        backward(cell, cache, dy=dy[:, :, :-1])
    g1 = backward(cell, cache, dy=dy)
    g2 = backward(cell, forward(cell, args)[3], dy=dy)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------
# NaN and inf: no error, propagated
# ---------------------------------------------------------------------------------------
# Nothing in fastrnn.functional looks at the values of the data, so non-finite numbers are
# not an error: they flow through the GEMMs and the activations like in NumPy / PyTorch.
# The contract tested here is that of the NumPy reference (and of torch): a NaN reaching a
# row's state makes that row's outputs NaN from there on (tanh, sigmoid, max(a, 0) all
# propagate NaN) and leaves the other rows untouched, and the weight gradients, which sum
# over all rows, are NaN too.  Silently turning the NaN into a number would hide bad data.

VARIANTS = {  # name -> (cell, forward kwargs)
    "rnn_tanh": ("rnn", dict(nonlinearity="tanh")),
    "rnn_relu": ("rnn", dict(nonlinearity="relu")),
    "lstm": ("lstm", {}),
    "gru": ("gru", dict(reset_after=True)),
    "gru_noreset": ("gru", dict(reset_after=False)),
}
variants = pytest.mark.parametrize("variant", list(VARIANTS))


def ref_forward(cell, args, **kw):
    w = (args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"])
    if cell == "lstm":
        return ref.lstm_forward(args["x"], args["h0"], args["c0"], *w, **kw)
    y, hT, cache = getattr(ref, f"{cell}_forward")(args["x"], args["h0"], *w, **kw)
    return y, hT, None, cache


@variants
@dtypes
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("where", ["x", "h0"])
def test_nan_propagates(variant, dtype, reverse, where):
    cell, kw = VARIANTS[variant]
    b0, t0 = 1, 2
    clean = make_args(cell, dtype)
    bad = {k: v.copy() for k, v in clean.items()}
    if where == "x":
        bad["x"][t0, b0, 0] = np.nan
        # steps at and after t0 in processing order
        hit = slice(0, t0 + 1) if reverse else slice(t0, T)
    else:
        bad["h0"][b0, 0] = np.nan
        hit = slice(0, T)
    others = [b for b in range(B) if b != b0]

    y, hT, cT, cache = forward(cell, bad, reverse=reverse, **kw)
    yc, hTc, cTc, _ = forward(cell, clean, reverse=reverse, **kw)
    # the NaN reaches the row's state, so every later output of that row is NaN
    assert np.isnan(y[hit, b0]).all(), y[:, b0]
    assert np.isnan(hT[b0]).all(), hT[b0]
    if cell == "lstm":
        assert np.isnan(cT[b0]).all()
    # ... and the other rows are untouched
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(y[:, others], yc[:, others], **tol)
    np.testing.assert_allclose(hT[others], hTc[others], **tol)

    g = backward(cell, cache, dy=np.ones((T, B, H), dtype))       # no crash
    # the NaN state multiplies into dW_hh; a NaN input also into dW_ih (0 * NaN = NaN).
    # (A NaN h0 need not reach dW_ih: relu' of a NaN state is 0, as in the reference.)
    assert np.isnan(g.dw_hh).any()
    if where == "x":
        assert np.isnan(g.dw_ih).any()
    assert np.isfinite(g.dx[:, others]).all() and np.isfinite(g.dh0[others]).all()


@variants
@dtypes
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_inf_behaves_like_reference(variant, dtype, reverse):
    """inf input: no crash, and the kernels agree with the NumPy reference (NaN where it has
    NaN, the same numbers elsewhere; saturated sigmoid/tanh give finite results)."""
    cell, kw = VARIANTS[variant]
    args = make_args(cell, dtype)
    args["x"][2, 1, 0] = np.inf
    args["x"][3, 2, 1] = -np.inf
    y, hT, cT, cache = forward(cell, args, reverse=reverse, **kw)
    with np.errstate(all="ignore"):
        ry, rhT, rcT, rcache = ref_forward(cell, args, reverse=reverse, **kw)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, ry, **tol)            # equal_nan=True by default
    np.testing.assert_allclose(hT, rhT, **tol)
    if cell == "lstm":
        np.testing.assert_allclose(cT, rcT, **tol)
    backward(cell, cache, dy=np.ones((T, B, H), dtype))                 # no crash


# ---------------------------------------------------------------------------------------
# empty problems: B == 0, T == 0
# ---------------------------------------------------------------------------------------

@variants
@dtypes
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("given", [True, False], ids=["states", "none"])
def test_zero_steps(variant, dtype, reverse, given):
    """T == 0: empty y, final state = initial state, backward passes dhT (dcT) to dh0 (dc0)
    and gives zero parameter gradients."""
    cell, kw = VARIANTS[variant]
    G = CELLS[cell]
    args = make_args(cell, dtype, T=0)
    if not given:
        args["h0"] = None
        args["b_ih"] = args["b_hh"] = None
        if cell == "lstm":
            args["c0"] = None
    y, hT, cT, cache = forward(cell, args, reverse=reverse, **kw)
    assert y.shape == (0, B, H) and y.dtype == dtype
    assert hT.shape == (B, H) and hT.dtype == dtype
    states = [("h0", hT)] + ([("c0", cT)] if cell == "lstm" else [])
    for name, final in states:
        if given:
            np.testing.assert_array_equal(final, args[name])
            assert not np.shares_memory(final, args[name])
        else:
            np.testing.assert_array_equal(final, 0)

    rng = np.random.default_rng(3)
    dhT = rng.standard_normal((B, H)).astype(dtype)
    dcT = rng.standard_normal((B, H)).astype(dtype)
    g = backward(cell, cache, dy=np.zeros((0, B, H), dtype), dhT=dhT, dcT=dcT)
    assert g.dx.shape == (0, B, I) and g.dx.dtype == dtype
    np.testing.assert_array_equal(g.dh0, dhT)
    if cell == "lstm":
        np.testing.assert_array_equal(g.dc0, dcT)
    assert g.dw_ih.shape == (G * H, I) and g.dw_hh.shape == (G * H, H)
    assert g.dw_ih.dtype == dtype and g.dw_hh.dtype == dtype
    assert not g.dw_ih.any() and not g.dw_hh.any()
    for db in (g.db_ih, g.db_hh):
        if given:
            assert db.shape == (G * H,) and db.dtype == dtype and not db.any()
        else:
            assert db is None

    # None upstream gradients: zeros
    g = backward(cell, forward(cell, args, reverse=reverse, **kw)[3])
    np.testing.assert_array_equal(g.dh0, np.zeros((B, H)))
    # inference
    assert forward(cell, args, reverse=reverse, training=False, **kw)[3] is None


@variants
@dtypes
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, "empty"])
def test_zero_batch(variant, dtype, reverse, lengths):
    cell, kw = VARIANTS[variant]
    G = CELLS[cell]
    args = make_args(cell, dtype, B=0)
    lens = None if lengths is None else np.zeros(0, dtype=np.int64)
    y, hT, cT, cache = forward(cell, args, reverse=reverse, lengths=lens, **kw)
    assert y.shape == (T, 0, H) and y.dtype == dtype
    assert hT.shape == (0, H) and hT.dtype == dtype
    if cell == "lstm":
        assert cT.shape == (0, H) and cT.dtype == dtype
    g = backward(cell, cache, dy=np.zeros((T, 0, H), dtype), dhT=np.zeros((0, H), dtype),
                 dcT=np.zeros((0, H), dtype))
    assert g.dx.shape == (T, 0, I) and g.dx.dtype == dtype
    assert g.dh0.shape == (0, H)
    if cell == "lstm":
        assert g.dc0.shape == (0, H)
    assert g.dw_ih.shape == (G * H, I) and not g.dw_ih.any()
    assert g.dw_hh.shape == (G * H, H) and not g.dw_hh.any()
    assert g.db_ih.shape == (G * H,) and not g.db_ih.any()
    assert g.db_hh.shape == (G * H,) and not g.db_hh.any()
    backward(cell, forward(cell, args, reverse=reverse, **kw)[3])       # None grads


@variants
@dtypes
def test_zero_steps_and_batch(variant, dtype):
    cell, kw = VARIANTS[variant]
    args = make_args(cell, dtype, T=0, B=0)
    y, hT, cT, cache = forward(cell, args, **kw)
    assert y.shape == (0, 0, H) and hT.shape == (0, H)
    g = backward(cell, cache)
    assert g.dx.shape == (0, 0, I) and g.dh0.shape == (0, H)


@cells
@dtypes
def test_zero_steps_rejects_lengths(cell, dtype):
    # lengths must lie in 1..T, an empty range when T == 0
    args = make_args(cell, dtype, T=0)
    with pytest.raises(ValueError, match=esc("lengths must be in [1, T] = [1, 0], got values "
                                             "from 1 to 1")):
        forward(cell, args, lengths=np.ones(B, np.int64))


# ---------------------------------------------------------------------------------------
# sizes beyond 32-bit BLAS: refused before allocating
# ---------------------------------------------------------------------------------------

@cells
@dtypes
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("TB", [(2**16, 2**15 + 1), (INT_MAX + 1, 1), (1, INT_MAX + 1)],
                         ids=["square", "long", "wide"])
def test_too_many_rows_refused_before_allocation(cell, dtype, training, TB):
    """T*B > 2**31-1 rows cannot be passed to 32-bit BLAS.  x is a zero-stride view (a few
    bytes), so any large allocation would come from the library: tracemalloc sees NumPy's
    allocations, and the peak must stay tiny."""
    T_, B_ = TB
    G = CELLS[cell]
    x = np.broadcast_to(np.zeros((1, 1, 1), dtype), (T_, B_, 1))
    w_ih = np.zeros((G * 1, 1), dtype)
    w_hh = np.zeros((G * 1, 1), dtype)
    args = dict(x=x, h0=None, c0=None, w_ih=w_ih, w_hh=w_hh, b_ih=None, b_hh=None)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=esc(f"x is too large: T*B = {T_ * B_} rows "
                                                 f"exceeds the 32-bit BLAS limit")):
            forward(cell, args, training=training)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated before the size check"


@cells
@dtypes
def test_rows_at_the_limit_pass_the_size_check(cell, dtype):
    """T*B == 2**31-1 is allowed by the size check: the next check (lengths) must be the one
    that fires, and still nothing big is allocated."""
    G = CELLS[cell]
    x = np.broadcast_to(np.zeros((1, 1, 1), dtype), (INT_MAX, 1, 1))
    args = dict(x=x, h0=None, c0=None, w_ih=np.zeros((G, 1), dtype),
                w_hh=np.zeros((G, 1), dtype), b_ih=None, b_hh=None)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(1,\)"):
            forward(cell, args, lengths=np.ones(2, np.int64))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated before the argument checks"


_HUGE_INPUT_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from fastrnn import functional as F

    # cap the address space a little above what the interpreter already uses, so that an
    # attempt to allocate gigabytes fails fast with MemoryError instead of eating the RAM
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))

    cell, dtype, n = sys.argv[1], np.dtype(sys.argv[2]), int(sys.argv[3])
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    x = np.broadcast_to(np.zeros((1, 1, 1), dtype), (1, 1, n))
    w_ih = np.broadcast_to(np.zeros((1, 1), dtype), (G, n))
    w_hh = np.zeros((G, 1), dtype)
    args = (x, None, None) if cell == "lstm" else (x, None)
    try:
        getattr(F, cell + "_forward")(*args, w_ih, w_hh, None, None)
    except BaseException as exc:
        print(type(exc).__name__ + ": " + str(exc))
    else:
        print("no error")
""")


@cells
@dtypes
def test_input_size_beyond_int32_refused_before_allocation(cell, dtype):
    """I = 2**31 does not fit BLAS's 32-bit int (the kernels pass `<int>I` as k and lda),
    so it must be refused with a ValueError naming the size, before x and w_ih (tens of
    GB here) are copied.  Run in a subprocess whose address space is capped: an allocation
    attempt shows up as MemoryError there instead of exhausting the machine."""
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _HUGE_INPUT_SCRIPT, cell,
                          np.dtype(dtype).name, str(2**31)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    result = out.stdout.strip()
    assert result.startswith("ValueError: "), result
    assert re.search(r"\b(x|w_ih|I)\b", result) and re.search(
        r"2147483648|2147483647|2\*\*31|32-bit", result), result
