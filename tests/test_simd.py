"""The C helpers in csrc/: vectorized sigmoid/tanh and the packed-panel products, at every
kernel level this CPU can run (runtime dispatch: generic, avx2, avx512)."""
import numpy as np
import pytest

from fastrnn.engine import simd as _simd
from fastrnn import functional as F

LEVELS = [name for name in _simd.LEVELS
          if _simd.LEVELS.index(name) <= _simd.LEVELS.index(_simd.supported())]


@pytest.fixture(params=LEVELS)
def level(request):
    before = _simd.current()
    assert _simd.select(request.param) == request.param
    yield request.param
    _simd.select(before)


def _inputs(dtype):
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal(20000) * s for s in (1e-3, 0.2, 1, 4, 30)]
    parts.append(np.linspace(-60, 60, 20001))
    parts.append(np.array([0.0, -0.0, 0.39999, 0.4, -0.4, 1e-30, -1e-30, 88.5, -88.5, 700,
                           -700, 1e300, -1e300]))
    with np.errstate(over="ignore"):
        return np.concatenate(parts).astype(dtype)


def _max_ulp(got, truth, dtype):
    t = truth.astype(dtype)
    ok = np.abs(t) > np.finfo(dtype).tiny
    return np.max(np.abs(got[ok].astype(np.float64) - truth[ok]) /
                  np.spacing(np.abs(t[ok])).astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_activation_accuracy(level, name, dtype):
    x = _inputs(dtype)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        truth = np.tanh(x64) if name == "tanh" else 1 / (1 + np.exp(-x64))
    got = _simd._apply(name, x)
    assert got.dtype == dtype
    assert _max_ulp(got, truth, dtype) <= 8
    if name == "tanh":
        assert np.array_equal(np.sign(got), np.sign(x))        # odd, exact zero at 0
        assert np.all(np.abs(got) <= 1)
    else:
        assert np.all((got >= 0) & (got <= 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_activation_special_values(level, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0], dtype)
    t = _simd._apply("tanh", x)
    s = _simd._apply("sigmoid", x)
    assert np.isnan(t[0]) and np.isnan(s[0])
    assert list(t[1:]) == [1, -1, 0]
    assert list(s[1:]) == [1, 0, 0.5]


def test_select_rejects_unknown_level():
    with pytest.raises(ValueError, match="SIMD level must be one of"):
        _simd.select("sse9")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_kernels_agree_across_levels(cell, dtype):
    """The whole forward + backward at each dispatch level (different SIMD widths, FMA or
    not) matches the generic build to rounding."""
    rng = np.random.default_rng(5)
    T, B, I, H = 6, 7, 5, 37                 # H not a multiple of any panel width
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w = [(0.3 * rng.standard_normal(s)).astype(dtype) for s in ((G * H, I), (G * H, H),
                                                                 (G * H,), (G * H,))]
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    before = _simd.current()
    results = {}
    try:
        for lv in LEVELS:
            _simd.select(lv)
            if cell == "lstm":
                y, hT, cT, cache = F.lstm_forward(x, None, None, *w, lengths=lengths)
                g = F.lstm_backward(dy, None, None, cache)
            else:
                fwd = getattr(F, f"{cell}_forward")
                y, hT, cache = fwd(x, None, *w, lengths=lengths)
                g = getattr(F, f"{cell}_backward")(dy, None, cache)
            results[lv] = [y, hT, *g]
    finally:
        _simd.select(before)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for lv in LEVELS:
        for a, b in zip(results[lv], results["generic"]):
            np.testing.assert_allclose(a, b, **tol, err_msg=lv)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("G, H, M", [(4, 37, 7), (3, 64, 13), (1, 5, 1), (4, 200, 64)])
def test_packed_product_is_bit_identical_at_fma_levels(dtype, G, H, M):
    """The packed-panel product sums each element as one FMA chain in k order, so the AVX2
    and AVX-512 micro-kernels (different register blockings) agree to the bit, and both
    match NumPy to rounding."""
    rng = np.random.default_rng(G * H + M)
    K = H
    w = rng.standard_normal((G * H, K)).astype(dtype)
    a = rng.standard_normal((M, K)).astype(dtype)
    packed = _simd.pack_unit_blocks(w, G, H)
    before = _simd.current()
    out = {}
    try:
        for lv in LEVELS:
            _simd.select(lv)
            out[lv] = _simd._gemm_unit_blocks(a, packed, G, H)
    finally:
        _simd.select(before)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for lv, got in out.items():
        np.testing.assert_allclose(got, a @ w.T, rtol=tol, atol=tol * 10, err_msg=lv)
    if "avx2" in out and "avx512" in out:
        np.testing.assert_array_equal(out["avx512"], out["avx2"])
