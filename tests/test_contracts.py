"""Contract fuzzing: random calls with bad shapes, dtypes, strides, sizes and values.

Every call must either raise TypeError / ValueError (fastrnn's errors are subclasses) with a
message, or return results of the documented shapes that are finite and equal to the NumPy
reference whenever the inputs are finite.  Never a crash, never silent garbage.  The number
of examples is bounded so the suite stays quick; the sanitizer job (.ci/sanitize) runs these
against an AddressSanitizer + UBSan build.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn
from fastrnn import functional as F
from fastrnn import layers as L
from fastrnn import reference as R

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
EXPECTED = (TypeError, ValueError)

# ways to damage an argument
DAMAGE = ["none", "none", "none", "shape", "ndim", "dtype", "layout", "nan", "none_value"]
BAD_DTYPES = [np.int32, np.bool_, np.complex128, np.float16, object, "U3"]


def _layout(a, how):
    if a.ndim == 0:
        return a
    if how == 0:                                            # strided view
        big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    if how == 1 and a.ndim >= 2:                            # Fortran order
        return np.asfortranarray(a)
    buf = np.zeros(a.nbytes + 1, np.uint8)                  # unaligned
    out = np.frombuffer(buf.data, a.dtype, a.size, offset=1).reshape(a.shape)
    out[...] = a
    return out


def _damage(a, kind, draw):
    """(damaged value, still valid?)."""
    if kind == "none" or a is None:
        return a, True
    if kind == "shape":
        axis = draw(st.integers(0, a.ndim - 1))
        shape = list(a.shape)
        shape[axis] += draw(st.sampled_from([-1, 1, 2]))
        if shape[axis] < 0:
            shape[axis] = 3
        return np.zeros(shape, a.dtype), False
    if kind == "ndim":
        return (a[None] if draw(st.booleans()) else a.reshape(-1)[:1].reshape(())), False
    if kind == "dtype":
        dt = draw(st.sampled_from(BAD_DTYPES))
        valid = dt in (np.int32, np.bool_, np.float16)     # numbers: cast, documented
        try:
            return a.astype(dt), valid
        except (TypeError, ValueError):
            return a.astype(object), False
    if kind == "layout":
        return _layout(a, draw(st.integers(0, 2))), True
    if kind == "nan":
        b = a.copy()
        if b.size:
            b.reshape(-1)[draw(st.integers(0, b.size - 1))] = draw(
                st.sampled_from([np.nan, np.inf, -np.inf]))
        return b, True
    if kind == "none_value":
        return None, None                                   # None: allowed for some args
    raise AssertionError(kind)


@st.composite
def problems(draw):
    cell = draw(st.sampled_from(sorted(GATES)))
    G = GATES[cell]
    T, B, I, H = (draw(st.integers(0, 4)), draw(st.integers(0, 3)), draw(st.integers(1, 4)),
                  draw(st.integers(1, 5)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    args = dict(x=rng.standard_normal((T, B, I)).astype(dtype),
                h0=rng.standard_normal((B, H)).astype(dtype),
                w_ih=(0.5 * rng.standard_normal((G * H, I))).astype(dtype),
                w_hh=(0.5 * rng.standard_normal((G * H, H))).astype(dtype),
                b_ih=rng.standard_normal(G * H).astype(dtype),
                b_hh=rng.standard_normal(G * H).astype(dtype))
    if cell == "lstm":
        args["c0"] = rng.standard_normal((B, H)).astype(dtype)
    valid, finite = True, True
    target = draw(st.sampled_from(sorted(args)))
    kind = draw(st.sampled_from(DAMAGE))
    damaged, ok = _damage(args[target], kind, draw)
    if ok is None:                                          # None for this argument
        ok = target in ("h0", "c0", "b_ih", "b_hh")
    args[target] = damaged
    valid = valid and ok
    finite = kind != "nan"
    lengths = None
    lkind = draw(st.sampled_from(["none", "none", "good", "zero", "big", "float", "shape",
                                  "list"]))
    if lkind == "good" and B:
        lengths = rng.integers(1, T + 1, B) if T else None
    elif lkind == "list" and T and B:
        lengths = [int(v) for v in rng.integers(1, T + 1, B)]
    elif lkind in ("zero", "big", "float", "shape") and B:
        lengths = {"zero": np.zeros(B, int), "big": np.full(B, T + 1),
                   "float": np.full(B, 1.5), "shape": np.ones(B + 1, int)}[lkind]
        valid = False
    reverse = draw(st.booleans())
    return cell, args, lengths, reverse, valid, finite


def _forward(module, cell, a, lengths, reverse):
    w = (a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if cell == "lstm":
        y, hT, cT, cache = module.lstm_forward(a["x"], a["h0"], a["c0"], *w, lengths=lengths,
                                               reverse=reverse)
        return (y, hT, cT), cache
    y, hT, cache = getattr(module, f"{cell}_forward")(a["x"], a["h0"], *w, lengths=lengths,
                                                      reverse=reverse)
    return (y, hT), cache


def _backward(module, cell, dy, cache):
    if cell == "lstm":
        return module.lstm_backward(dy, None, None, cache)
    return getattr(module, f"{cell}_backward")(dy, None, cache)


@SETTINGS
@given(problems())
def test_functional_api_contract(problem):
    cell, args, lengths, reverse, valid, finite = problem
    try:
        outs, cache = _forward(F, cell, args, lengths, reverse)
    except EXPECTED as exc:
        assert str(exc)
        return
    assert valid, f"accepted invalid input: {cell} {[(k, getattr(v, 'shape', v)) for k, v in args.items()]} lengths={lengths}"
    y = outs[0]
    T, B = y.shape[:2]
    dy = np.ones_like(y)
    grads = _backward(F, cell, dy, cache)
    if not finite:
        return
    ref = {k: (None if v is None else np.asarray(v).astype(np.float64)) for k, v in args.items()}
    ref_outs, ref_cache = _forward(R, cell, ref, lengths, reverse)
    ref_grads = _backward(R, cell, dy.astype(np.float64), ref_cache)
    tol = dict(rtol=1e-3, atol=1e-4) if y.dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
    for got, want in zip(outs, ref_outs):
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, **tol)
    for got, want in zip(grads, ref_grads):
        if want is None:
            assert got is None
            continue
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, **tol)


@SETTINGS
@given(cell=st.sampled_from(["RNN", "LSTM", "GRU"]), bf=st.booleans(),
       shape=st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(1, 5)),
       damage=st.sampled_from(["none", "dtype", "ndim", "layout", "list", "features"]),
       bidirectional=st.booleans(), seed=st.integers(0, 100))
def test_layer_contract(cell, bf, shape, damage, bidirectional, seed):
    layer = getattr(L, cell)(3, 4, num_layers=2, batch_first=bf, bidirectional=bidirectional,
                             seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape[:2] + (3,))
    valid = True
    if damage == "dtype":
        x = x.astype(np.complex64)
        valid = False
    elif damage == "ndim":
        x = x.reshape(-1)
        valid = False
    elif damage == "layout":
        x = _layout(x, seed % 3)
    elif damage == "list":
        x = list(x)
        valid = False
    elif damage == "features":
        x = rng.standard_normal(shape[:2] + (shape[2] + 3,))
        valid = False
    try:
        y, state = layer.forward(x)
    except EXPECTED as exc:
        assert str(exc)
        return
    assert valid
    assert np.isfinite(y).all()
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == np.shape(x) and np.isfinite(dx).all()


@SETTINGS
@given(cut=st.integers(0, 4000), flip=st.integers(0, 4000), bit=st.integers(0, 7))
def test_model_file_contract(tmp_path_factory, cut, flip, bit):
    d = tmp_path_factory.mktemp("files")
    path = d / "m.fastrnn"
    fastrnn.save(fastrnn.Sequential([L.LSTM(2, 3), L.Dense(3, 2)]), path)
    data = bytearray(path.read_bytes())
    data[flip % len(data)] ^= 1 << bit
    data = data[:len(data) - cut % len(data)] if cut % 3 == 0 else data
    bad = d / "bad.fastrnn"
    bad.write_bytes(bytes(data))
    try:
        model = fastrnn.load(bad)
    except fastrnn.ModelFileError as exc:
        assert str(exc)
        return
    out = model.eval().forward(np.zeros((2, 1, 2), np.float32))
    assert out.shape == (2, 1, 2)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_step_contract_with_bad_states(kind):
    G = GATES[kind]
    rng = np.random.default_rng(0)
    w = [rng.standard_normal((G * 4, 3)), rng.standard_normal((G * 4, 4)), None, None]
    sw = getattr(F, f"prepare_{kind}")(*w)
    step = getattr(F, f"{kind}_step")
    bad_states = [np.zeros(3), np.zeros((2, 4)), np.zeros((1, 4), complex), "h", 3.0]
    for s in bad_states:
        state = (s, s) if kind == "lstm" else s
        with pytest.raises(EXPECTED):
            step(np.zeros(3), state, sw)
    with pytest.raises(EXPECTED):
        step(np.zeros(5), None, sw)
