"""Tests of the compiled kernels through the public API, ``fastrnn.functional``.

Every cell is driven uniformly under one name each: "rnn_tanh", "rnn_relu", "lstm",
"gru" (reset_after=True, PyTorch's) and "gru_noreset" (reset_after=False, Cho et al.).
The oracle is the NumPy reference (``fastrnn.reference``, itself tested against torch and
finite differences in test_reference.py).  Covered here:

* kernels vs reference: every cell x float32/float64 x lengths None / unsorted lengths
  containing 1 and T / lengths all < T x both directions x bias / no bias / one bias x
  several upstream-gradient patterns (random dy, dhT, dcT, some of them None): outputs,
  final states, all gradients and result dtypes; padded outputs and dx exactly 0; backward
  leaves the forward's results alone.  float32 results are compared with the float64
  reference of the same (float32-rounded) inputs.  Also degenerate (size-1) and larger
  shapes;
* float64 central finite differences of the KERNELS' gradients (every entry of x, h0, c0,
  w_ih, w_hh, b_ih, b_hh) for every cell, with and without lengths, both directions;
* parity with torch.nn.RNN / LSTM / GRU (float64 and float32, packed variable lengths with
  enforce_sorted=False, bidirectional for the reverse direction);
* the inference path (training=False): same results, no cache, including the chunked
  input projection used when T*B > 1024, and a workspace that does not grow with T;
* input handling: transposed / strided / Fortran-ordered / unaligned / broadcast /
  read-only arrays, float16 x, mixed dtypes and byte orders, torch tensors as inputs,
  inputs left unmodified, None states;
* empty inputs (B == 0, T == 0), determinism, large (saturating) inputs;
* the BLAS wrapper ``fastrnn.engine.blas._gemm`` against NumPy.

test_nonnative_byte_order_x FAILS on the current library: an x stored in non-native byte
order (e.g. ``np.dtype(">f4")`` on x86) is used as the compute dtype and the kernels treat
any non-float32 dtype as float64 -- garbage results for '>f8', heap corruption (crash) for
'>f4' and '>f2'.  That test runs the calls in a subprocess so the crash cannot take the
test session down.

torch-dependent tests skip cleanly when torch is not installed.
"""
import numpy as np
import pytest

from fastrnn.engine import blas as _blas
from fastrnn import functional as F
from fastrnn import reference as ref
import problems

# name -> number of gate blocks G
CELLS = problems.GATES
TORCH_CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
DTYPES = [np.float32, np.float64]

# default problem size for the reference comparisons; lengths unsorted, contain 1 and T
T, B, I, H = 6, 5, 4, 5
LENGTHS = np.array([3, 1, 6, 2, 5])
SHORT_LENGTHS = np.array([2, 4, 1, 4, 3])     # no row is full: the last steps are all idle

# per-dtype tolerances of the kernel against the float64 reference
TOL = {np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13),
       np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5)}


# ----------------------------------------------------------------------------------------
# driving the kernels (F) and the reference (ref) uniformly
# ----------------------------------------------------------------------------------------

def make_problem(cell, seed, shape=(T, B, I, H), bias=True, dtype=np.float64, scale=0.5):
    return problems.make_problem(cell, seed, shape, bias, dtype, scale)


def cast(p, dtype):
    """Copy of a problem / gradient dict with every array cast to dtype."""
    return {k: None if v is None else np.asarray(v).astype(dtype) for k, v in p.items()}


forward = problems.forward


def backward(mod, cell, cache, dy, dhT, dcT=None, **kw):
    """The gradients as a dict keyed like the problem."""
    return problems.as_dict(problems.backward(mod, cell, cache, dy, dhT, dcT, **kw))


def upstream(cell, seed, shape, pattern="all", dtype=np.float64):
    """dy, dhT, dcT for the given pattern (which of them are None)."""
    t, b, _, h = shape
    rng = np.random.default_rng(seed + 7919)
    use = {"all": "yhc", "dy_only": "y", "states_only": "hc", "no_dhT": "yc",
           "none": ""}[pattern]
    dy = rng.standard_normal((t, b, h)).astype(dtype) if "y" in use else None
    dhT = rng.standard_normal((b, h)).astype(dtype) if "h" in use else None
    dcT = rng.standard_normal((b, h)).astype(dtype) if ("c" in use and cell == "lstm") \
        else None
    return dy, dhT, dcT


def snapshot(*dicts_or_arrays):
    """Deep copies, to check later that nothing was modified in place."""
    out = []
    for d in dicts_or_arrays:
        if isinstance(d, dict):
            out.append({k: None if v is None else np.array(v, copy=True)
                        for k, v in d.items()})
        else:
            out.append(None if d is None else np.array(d, copy=True))
    return out


def assert_unmodified(before, after):
    for b_, a_ in zip(before, after):
        if isinstance(b_, dict):
            for k in b_:
                if b_[k] is not None:
                    np.testing.assert_array_equal(np.asarray(a_[k]), b_[k], err_msg=k)
        elif b_ is not None:
            np.testing.assert_array_equal(np.asarray(a_), b_)


def full_run(cell, p, lengths, reverse, dy, dhT, dcT, **kw):
    """Kernel forward + backward: (y, hT, cT, grads dict).  Also checks that the backward
    (which overwrites the cache's buffers) leaves the forward's results alone."""
    y, hT, cT, cache = forward(F, cell, p, lengths, reverse, **kw)
    outs = [a.copy() for a in (y, hT, cT) if a is not None]
    g = backward(F, cell, cache, dy, dhT, dcT)
    for a, b in zip([a for a in (y, hT, cT) if a is not None], outs):
        np.testing.assert_array_equal(a, b, err_msg="backward modified a forward result")
    return y, hT, cT, g


def assert_runs_identical(a, b):
    """Bit-identical results of two full_run calls."""
    for u, v, name in zip(a[:3], b[:3], ("y", "hT", "cT")):
        if u is None:
            assert v is None, name
        else:
            assert u.dtype == v.dtype, name
            np.testing.assert_array_equal(u, v, err_msg=name)
    assert a[3].keys() == b[3].keys()
    for k in a[3]:
        if a[3][k] is None:
            assert b[3][k] is None, k
        else:
            assert a[3][k].dtype == b[3][k].dtype, k
            np.testing.assert_array_equal(a[3][k], b[3][k], err_msg="d" + k)


def random_lengths(rng, t, b):
    """Unsorted int lengths in 1..t of shape (b,), containing both 1 and t (b >= 2)."""
    lengths = rng.integers(1, t + 1, size=b)
    lengths[rng.choice(b, 2, replace=False)] = [1, t]
    return lengths


# ----------------------------------------------------------------------------------------
# kernels vs reference
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["all", "dy_only", "states_only", "no_dhT"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS, SHORT_LENGTHS],
                         ids=["full", "lengths", "short"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_kernels_match_reference(cell, dtype, lengths, reverse, bias, pattern):
    shape = (T, B, I, H)
    p = make_problem(cell, 1, shape, bias, dtype)
    dy, dhT, dcT = upstream(cell, 1, shape, pattern, dtype)
    before = snapshot(p, dy, dhT, dcT)

    y, hT, cT, g = full_run(cell, p, lengths, reverse, dy, dhT, dcT)
    r_y, r_hT, r_cT, r_cache = forward(ref, cell, cast(p, np.float64), lengths, reverse)
    up64 = [None if a is None else a.astype(np.float64) for a in (dy, dhT, dcT)]
    rg = backward(ref, cell, r_cache, *up64)
    tol = TOL[np.dtype(dtype)]

    outs = [("y", y, r_y), ("hT", hT, r_hT)]
    if cell == "lstm":
        outs.append(("cT", cT, r_cT))
    else:
        assert cT is None
    for name, a, r in outs:
        assert a.dtype == dtype, name
        assert a.shape == r.shape, name
        np.testing.assert_allclose(a, r, err_msg=name, **tol)
    for k, r in rg.items():
        if r is None:                                   # absent bias
            assert g[k] is None, k
            continue
        assert g[k].dtype == dtype, "d" + k
        assert g[k].shape == (p[k].shape if p[k] is not None else r.shape), "d" + k
        np.testing.assert_allclose(g[k], r, err_msg="d" + k, **tol)
    if bias:
        # the two bias gradients are separate arrays
        assert not np.shares_memory(g["b_ih"], g["b_hh"])
    if lengths is not None:
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y[pad] == 0), "outputs past a row's end must be exactly 0"
        assert np.all(g["x"][pad] == 0), "dx past a row's end must be exactly 0"
    assert_unmodified(before, [p, dy, dhT, dcT])


# (T, B, I, H): degenerate sizes (BLAS calls with a dimension of 1) and a few larger, odd
# sizes (kept moderate: multithreaded BLAS on tiny problems is slow on a loaded machine)
SHAPES = [(1, 1, 1, 1), (1, 3, 2, 1), (5, 1, 1, 2), (3, 2, 1, 7), (12, 16, 40, 33),
          (3, 37, 9, 24)]


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_kernels_match_reference_shapes(cell, dtype, shape):
    t_, b_, _, h_ = shape
    rng = np.random.default_rng(sum(shape))
    p = make_problem(cell, 4, shape, True, dtype, scale=1 / np.sqrt(max(shape[2:])))
    up = upstream(cell, 4, shape, "all", dtype)
    up64 = [None if a is None else a.astype(np.float64) for a in up]
    length_options = [None, random_lengths(rng, t_, b_) if b_ > 1
                      else np.array([(t_ + 1) // 2])]
    tol = dict(rtol=1e-11, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    for lengths in length_options:
        for reverse in (False, True):
            y, hT, cT, g = full_run(cell, p, lengths, reverse, *up)
            r = forward(ref, cell, cast(p, np.float64), lengths, reverse)
            rg = backward(ref, cell, r[3], *up64)
            for name, a, e in (("y", y, r[0]), ("hT", hT, r[1]), ("cT", cT, r[2])):
                if e is not None:
                    assert a.dtype == dtype and a.shape == e.shape
                    np.testing.assert_allclose(a, e, err_msg=name, **tol)
            for k, e in rg.items():
                assert g[k].dtype == dtype and g[k].shape == e.shape
                np.testing.assert_allclose(g[k], e, err_msg="d" + k, **tol)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("which", ["b_ih", "b_hh"], ids=["ih_only", "hh_only"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_single_bias_matches_reference(cell, which, dtype, lengths, reverse):
    """Only one of the two biases present: the other's gradient is None, and the GRU's
    b_hn (inside r * (.) when reset_after) is handled right on either side."""
    p = make_problem(cell, 19, dtype=dtype)
    other = "b_hh" if which == "b_ih" else "b_ih"
    p[other] = None
    up = upstream(cell, 19, (T, B, I, H), "all", dtype)
    y, hT, cT, g = full_run(cell, p, lengths, reverse, *up)
    r = forward(ref, cell, cast(p, np.float64), lengths, reverse)
    rg = backward(ref, cell, r[3], *[None if a is None else a.astype(np.float64) for a in up])
    tol = TOL[np.dtype(dtype)]
    for name, a, e in (("y", y, r[0]), ("hT", hT, r[1]), ("cT", cT, r[2])):
        if e is not None:
            np.testing.assert_allclose(a, e, err_msg=name, **tol)
    assert g[other] is None and rg[other] is None
    for k, e in rg.items():
        if e is not None:
            assert g[k].dtype == dtype
            np.testing.assert_allclose(g[k], e, err_msg="d" + k, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_no_upstream_gradient_gives_zero_grads(cell, dtype):
    """dy, dhT, dcT all None: every gradient is exactly zero."""
    p = make_problem(cell, 2, dtype=dtype)
    _, _, _, g = full_run(cell, p, LENGTHS, True, None, None, None)
    for k, v in g.items():
        assert v.dtype == dtype
        assert not np.any(v), k


@pytest.mark.parametrize("cell", list(CELLS))
def test_none_states_are_zeros(cell):
    """h0 / c0 None behave exactly like zeros, in training and inference; dh0 (dc0) are
    still returned with shape (B, H)."""
    p = make_problem(cell, 3)
    pz = dict(p, h0=np.zeros((B, H)))
    pn = dict(p, h0=None)
    if cell == "lstm":
        pz["c0"] = np.zeros((B, H))
        pn["c0"] = None
    dy, dhT, dcT = upstream(cell, 3, (T, B, I, H))
    for reverse in (False, True):
        a = full_run(cell, pz, LENGTHS, reverse, dy, dhT, dcT)
        b = full_run(cell, pn, LENGTHS, reverse, dy, dhT, dcT)
        assert_runs_identical(a, b)
        assert b[3]["h0"].shape == (B, H)
        inf = forward(F, cell, pn, LENGTHS, reverse, training=False)
        for u, v in zip(a[:3], inf[:3]):
            if u is not None:
                np.testing.assert_allclose(v, u, rtol=1e-13, atol=1e-15)


# ----------------------------------------------------------------------------------------
# finite differences on the kernels
# ----------------------------------------------------------------------------------------

FD_SHAPE = (4, 3, 3, 3)          # T, B, I, H
FD_LENGTHS = np.array([2, 4, 1])


def _relu_kink_distance(p, lengths, reverse):
    """Smallest |pre-activation| over active (t, b) of an rnn_relu problem."""
    _, _, _, cache = forward(ref, "rnn_relu", p, lengths, reverse)
    pre = p["x"] @ p["w_ih"].T + cache["h_in"] @ p["w_hh"].T + p["b_ih"] + p["b_hh"]
    t, b = pre.shape[:2]
    active = np.ones((t, b), bool) if lengths is None else \
        np.arange(t)[:, None] < lengths[None, :]
    return np.abs(pre[active]).min()


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, FD_LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_kernel_gradients_finite_differences(cell, lengths, reverse):
    """Analytic gradients of the training path vs central differences of a loss computed
    with the inference path (which test_inference_matches_training ties to training)."""
    seed = 100
    if cell == "rnn_relu":
        # keep every ReLU pre-activation well away from the kink, so the loss is smooth
        # within +-eps of the point
        seed = next(s for s in range(100, 200) if _relu_kink_distance(
            make_problem(cell, s, FD_SHAPE), lengths, reverse) > 1e-3)
    p = make_problem(cell, seed, FD_SHAPE)
    Ry, Rh, Rc = upstream(cell, seed, FD_SHAPE, "all")

    def loss():
        y, hT, cT, _ = forward(F, cell, p, lengths, reverse, training=False)
        L = np.sum(y * Ry) + np.sum(hT * Rh)
        if cT is not None:
            L += np.sum(cT * Rc)
        return L

    _, _, _, cache = forward(F, cell, p, lengths, reverse)
    grads = backward(F, cell, cache, Ry, Rh, Rc)
    eps = 1e-5
    for name, v in p.items():
        fd = np.empty(v.size)
        flat = v.reshape(-1)                    # a view: perturb in place, then restore
        for j in range(v.size):
            orig = flat[j]
            flat[j] = orig + eps
            f_plus = loss()
            flat[j] = orig - eps
            f_minus = loss()
            flat[j] = orig
            fd[j] = (f_plus - f_minus) / (2 * eps)
        assert grads[name].shape == v.shape, name
        np.testing.assert_allclose(grads[name].reshape(-1), fd, rtol=1e-7, atol=1e-9,
                                   err_msg="d" + name)


# ----------------------------------------------------------------------------------------
# parity with PyTorch
# ----------------------------------------------------------------------------------------

TORCH_SHAPE = (7, 5, 4, 6)
TORCH_LENGTHS = np.array([4, 7, 1, 5, 3])
_TORCH_NAMES = dict(w_ih="weight_ih_l0", w_hh="weight_hh_l0", b_ih="bias_ih_l0",
                    b_hh="bias_hh_l0")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("lengths", [None, TORCH_LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_parity(cell, dtype, lengths, bidirectional, bias):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    t_, b_, i_, h_ = TORCH_SHAPE
    D = 2 if bidirectional else 1
    probs = [make_problem(cell, 30 + d, TORCH_SHAPE, bias, dtype) for d in range(D)]
    x = probs[0]["x"]
    for q in probs[1:]:
        q["x"] = x                                  # both directions read the same x
    rng = np.random.default_rng(40)
    Ry = rng.standard_normal((t_, b_, D * h_)).astype(dtype)
    Rh = rng.standard_normal((D, b_, h_)).astype(dtype)
    Rc = rng.standard_normal((D, b_, h_)).astype(dtype)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32

    kw = dict(input_size=i_, hidden_size=h_, bias=bias, bidirectional=bidirectional,
              dtype=tdtype)
    if cell.startswith("rnn"):
        mod = torch.nn.RNN(nonlinearity=cell[4:], **kw)
    else:
        mod = torch.nn.LSTM(**kw) if cell == "lstm" else torch.nn.GRU(**kw)
    with torch.no_grad():
        for d, q in enumerate(probs):
            suffix = "_reverse" if d == 1 else ""
            for k, tname in _TORCH_NAMES.items():
                if q[k] is not None:
                    getattr(mod, tname + suffix).copy_(torch.from_numpy(q[k]))
    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(np.stack([q["h0"] for q in probs]), requires_grad=True)
    tc0 = None
    if cell == "lstm":
        tc0 = torch.tensor(np.stack([q["c0"] for q in probs]), requires_grad=True)
    hx = (th0, tc0) if cell == "lstm" else th0
    if lengths is None:
        out, hn = mod(tx, hx)
    else:
        packed = pack_padded_sequence(tx, torch.as_tensor(lengths), enforce_sorted=False)
        out, hn = mod(packed, hx)
        out, _ = pad_packed_sequence(out, total_length=t_)
    cn = None
    if cell == "lstm":
        hn, cn = hn
    loss = (out * torch.from_numpy(Ry)).sum() + (hn * torch.from_numpy(Rh)).sum()
    if cell == "lstm":
        loss = loss + (cn * torch.from_numpy(Rc)).sum()
    loss.backward()

    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    dx = np.zeros_like(x)
    for d, q in enumerate(probs):
        sl = slice(d * h_, (d + 1) * h_)
        y, hT, cT, cache = forward(F, cell, q, lengths, reverse=(d == 1))
        np.testing.assert_allclose(y, out.detach().numpy()[:, :, sl], err_msg="y", **tol)
        np.testing.assert_allclose(hT, hn.detach().numpy()[d], err_msg="hT", **tol)
        if cell == "lstm":
            np.testing.assert_allclose(cT, cn.detach().numpy()[d], err_msg="cT", **tol)
        g = backward(F, cell, cache, Ry[:, :, sl], Rh[d], Rc[d])
        for k, v in g.items():
            assert v is None or v.dtype == dtype, k
        dx += g["x"]
        np.testing.assert_allclose(g["h0"], th0.grad.numpy()[d], err_msg="dh0", **tol)
        if cell == "lstm":
            np.testing.assert_allclose(g["c0"], tc0.grad.numpy()[d], err_msg="dc0", **tol)
        suffix = "_reverse" if d == 1 else ""
        for k, tname in _TORCH_NAMES.items():
            if q[k] is None:
                assert g[k] is None, k
                continue
            tg = getattr(mod, tname + suffix).grad.numpy()
            np.testing.assert_allclose(g[k], tg, err_msg="d" + k + suffix, **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), err_msg="dx", **tol)


# ----------------------------------------------------------------------------------------
# inference path (training=False)
# ----------------------------------------------------------------------------------------

# (T, B): the inference kernel projects the inputs max(1, min(T, 1024 // B)) steps at a time
INFER_SHAPES = [(7, 3), (300, 8), (9, 200), (5, 2000), (3, 1025), (4, 1024), (2, 1023)]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("TB", INFER_SHAPES, ids=[f"T{t}xB{b}" for t, b in INFER_SHAPES])
@pytest.mark.parametrize("cell", list(CELLS))
def test_inference_matches_training(cell, TB, reverse, with_lengths):
    t_, b_ = TB
    shape = (t_, b_, 3, 4)
    rng = np.random.default_rng(t_ * 10007 + b_)
    lengths = random_lengths(rng, t_, b_) if with_lengths else None
    for dtype in DTYPES:
        p = make_problem(cell, 5, shape, dtype=dtype)
        before = snapshot(p)
        y, hT, cT, cache = forward(F, cell, p, lengths, reverse, training=True)
        yi, hTi, cTi, cache_i = forward(F, cell, p, lengths, reverse, training=False)
        assert cache is not None and cache_i is None
        tight = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else \
            dict(rtol=1e-5, atol=1e-6)
        for name, a, b in (("y", y, yi), ("hT", hT, hTi), ("cT", cT, cTi)):
            if a is None:
                assert b is None
                continue
            assert b.dtype == dtype and b.shape == a.shape, name
            np.testing.assert_allclose(b, a, err_msg=name, **tight)
        if dtype == np.float64:
            # and both are right (guards against the same chunking error in both paths)
            r_y, r_hT, r_cT, _ = forward(ref, cell, p, lengths, reverse)
            np.testing.assert_allclose(yi, r_y, rtol=1e-11, atol=1e-13)
            np.testing.assert_allclose(hTi, r_hT, rtol=1e-11, atol=1e-13)
            if cell == "lstm":
                np.testing.assert_allclose(cTi, r_cT, rtol=1e-11, atol=1e-13)
        if lengths is not None:
            pad = np.arange(t_)[:, None] >= lengths[None, :]
            assert np.all(yi[pad] == 0)
        assert_unmodified(before, [p])


@pytest.mark.parametrize("cell", list(CELLS))
def test_inference_workspace_does_not_grow_with_T(cell):
    """training=False keeps O(B*G*H) beyond the outputs: the peak memory of a forward
    minus its outputs is the same for T and 2*T (training keeps O(T*B*G*H))."""
    import tracemalloc

    def extra_peak(t_, training):
        p = make_problem(cell, 20, (t_, 4, 8, 32))
        tracemalloc.start()
        try:
            out = forward(F, cell, p, None, False, training=training)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return peak - sum(a.nbytes for a in out[:3] if a is not None)

    small, large = extra_peak(600, False), extra_peak(1200, False)
    assert large <= 1.1 * small + 65536, (small, large)
    # the measurement does see a workspace that grows with T
    assert extra_peak(1200, True) > 1.5 * extra_peak(600, True)


def test_inference_cache_cannot_be_used_and_cache_is_single_use():
    p = make_problem("lstm", 6)
    *_, cache = forward(F, "lstm", p, training=False)
    assert cache is None
    with pytest.raises(ValueError):
        F.lstm_backward(None, None, None, cache)
    *_, cache = forward(F, "lstm", p)
    F.lstm_backward(None, None, None, cache)
    with pytest.raises(ValueError):
        F.lstm_backward(None, None, None, cache)


# ----------------------------------------------------------------------------------------
# input handling: layouts, read-only, dtypes, torch tensors
# ----------------------------------------------------------------------------------------

def _noncontiguous(a, layout):
    """An array equal to `a` but laid out differently in memory (never C-contiguous)."""
    if a is None:
        return None
    if layout == "fortran":
        if a.ndim == 1:
            return _noncontiguous(a, "strided")
        out = np.asfortranarray(a)
    elif layout == "transposed":
        # 3-D: a batch-major (B, T, .) buffer seen time-major; 2-D: the transpose of a
        # C array holding the transpose
        if a.ndim == 1:
            return _noncontiguous(a, "strided")
        axes = (1, 0, 2) if a.ndim == 3 else (1, 0)
        out = np.ascontiguousarray(a.transpose(axes)).transpose(axes)
    elif layout == "strided":
        # every other element of a bigger buffer, walking axis 0 backwards
        big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
        out = big[(slice(None, None, -2),) + (slice(None, None, 2),) * (a.ndim - 1)]
        out[...] = a
    elif layout == "unaligned":
        # C-contiguous, but its data pointer is not a multiple of the item size
        buf = np.zeros(a.nbytes + 1, np.uint8)
        out = np.frombuffer(buf.data, a.dtype, a.size, offset=1).reshape(a.shape)
        out[...] = a
        assert not out.flags.aligned
        np.testing.assert_array_equal(out, a)
        return out
    else:
        raise AssertionError(layout)
    np.testing.assert_array_equal(out, a)
    assert a.size <= 1 or not out.flags.c_contiguous
    return out


@pytest.mark.parametrize("layout", ["transposed", "strided", "fortran", "unaligned"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_noncontiguous_inputs(cell, layout):
    p = make_problem(cell, 7)
    up = upstream(cell, 7, (T, B, I, H))
    expected = full_run(cell, p, LENGTHS, True, *up)
    q = {k: _noncontiguous(v, layout) for k, v in p.items()}
    uq = [_noncontiguous(a, layout) for a in up]
    lengths = np.empty(2 * B, np.int32)[::2]
    lengths[...] = LENGTHS
    before = snapshot(q, *uq, lengths)
    got = full_run(cell, q, lengths, True, *uq)
    assert_runs_identical(got, expected)
    assert_unmodified(before, [q, *uq, lengths])


@pytest.mark.parametrize("cell", list(CELLS))
def test_readonly_inputs(cell):
    p = make_problem(cell, 8)
    up = upstream(cell, 8, (T, B, I, H))
    expected = full_run(cell, p, LENGTHS, False, *up)
    (q,), uq, lengths = snapshot(p), snapshot(*up), LENGTHS.copy()
    for a in [*q.values(), *uq, lengths]:
        if a is not None:
            a.setflags(write=False)
    got = full_run(cell, q, lengths, False, *uq)
    assert_runs_identical(got, expected)
    for training in (True, False):
        forward(F, cell, q, lengths, True, training=training)

    # zero-stride (broadcast, read-only) initial states and bias
    row = p["h0"][1]
    pb = dict(p, h0=np.broadcast_to(row, (B, H)), b_hh=None)
    pt = dict(p, h0=np.tile(row, (B, 1)), b_hh=None)
    if cell == "lstm":
        pb["c0"] = np.broadcast_to(p["c0"][2], (B, H))
        pt["c0"] = np.tile(p["c0"][2], (B, 1))
    pb["b_ih"] = np.broadcast_to(p["b_ih"][:1], p["b_ih"].shape)
    pt["b_ih"] = np.full_like(p["b_ih"], p["b_ih"][0])
    assert_runs_identical(full_run(cell, pb, lengths, True, *uq),
                          full_run(cell, pt, lengths, True, *uq))


@pytest.mark.parametrize("cell", list(CELLS))
def test_float16_computed_in_float32(cell):
    """float16 x: computed in float32 (any other float16 argument cast to it), every
    result float16 and equal to the float32 computation rounded to float16."""
    p16 = make_problem(cell, 9, dtype=np.float16)
    up16 = upstream(cell, 9, (T, B, I, H), dtype=np.float16)
    before = snapshot(p16, *up16)
    got = full_run(cell, p16, LENGTHS, True, *up16)
    exp = full_run(cell, cast(p16, np.float32), LENGTHS, True,
                   *[None if a is None else a.astype(np.float32) for a in up16])
    for a, e in zip(got[:3], exp[:3]):
        if a is not None:
            assert a.dtype == np.float16
            np.testing.assert_array_equal(a, e.astype(np.float16))
    for k, e in exp[3].items():
        assert got[3][k].dtype == np.float16, k
        np.testing.assert_array_equal(got[3][k], e.astype(np.float16), err_msg=k)
    # inference too
    yi = forward(F, cell, p16, LENGTHS, True, training=False)[0]
    assert yi.dtype == np.float16
    np.testing.assert_array_equal(yi, got[0])
    assert_unmodified(before, [p16, *up16])


_SWAPPED_F8 = np.dtype(np.float64).newbyteorder("S")      # non-native byte order


@pytest.mark.parametrize("x_dtype, other_dtype",
                         [(np.float32, np.float64), (np.float64, np.float32),
                          (np.float32, np.float16), (np.float32, _SWAPPED_F8),
                          (np.float64, _SWAPPED_F8)],
                         ids=["f32-f64", "f64-f32", "f32-f16", "f32-swappedf64",
                              "f64-swappedf64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_mixed_dtypes_follow_x(cell, x_dtype, other_dtype):
    """Weights, states, lengths and upstream gradients of another dtype (or byte order)
    are cast to x's dtype: same results as casting them beforehand, all results of x's
    dtype."""
    p = cast(make_problem(cell, 10), other_dtype)
    p["x"] = p["x"].astype(x_dtype)
    up = [None if a is None else a.astype(other_dtype)
          for a in upstream(cell, 10, (T, B, I, H))]
    lengths = LENGTHS.astype(np.dtype(np.int64).newbyteorder("S")
                             if other_dtype is _SWAPPED_F8 else np.uint8)
    got = full_run(cell, p, lengths, False, *up)
    exp = full_run(cell, cast(p, x_dtype), LENGTHS, False,
                   *[None if a is None else a.astype(x_dtype) for a in up])
    assert_runs_identical(got, exp)
    assert got[0].dtype == x_dtype


_BYTE_ORDER_SCRIPT = r"""
import json, sys
import numpy as np
from fastrnn import functional as F
sys.path.insert(0, sys.argv[2])
from test_functional import (CELLS, LENGTHS, T, B, I, H, backward, forward, make_problem,
                             upstream)

code = sys.argv[1]
native = np.dtype(code).newbyteorder("=")
report = {}
for cell in CELLS:
    p = make_problem(cell, 21, dtype=native)
    up = upstream(cell, 21, (T, B, I, H))
    y, hT, cT, cache = forward(F, cell, p, LENGTHS, True)
    expected = [y, hT, cT, *backward(F, cell, cache, *up).values()]
    # the same values, stored with the non-native byte order
    y, hT, cT, cache = forward(F, cell, dict(p, x=p["x"].astype(code)), LENGTHS, True)
    got = [y, hT, cT, *backward(F, cell, cache, *up).values()]
    pairs = [(g, e) for g, e in zip(got, expected) if e is not None]
    report[cell] = dict(
        max_error=max(float(np.max(np.abs(g.astype(np.float64) - e.astype(np.float64))))
                      for g, e in pairs),
        itemsizes=sorted({g.dtype.itemsize for g, _ in pairs}))
print(json.dumps(report))
"""


@pytest.mark.parametrize("native", [np.float64, np.float32, np.float16],
                         ids=["f8", "f4", "f2"])
def test_nonnative_byte_order_x(native):
    """x stored with the non-native byte order (e.g. big-endian data from np.frombuffer or
    a file) holds ordinary float values and must give the results of the native array
    (every other argument native).

    Runs in a subprocess because the library bug this exposes corrupts the heap (abort /
    segfault) for 2- and 4-byte floats; for 8-byte floats it silently returns garbage."""
    import json
    import os
    import subprocess
    import sys

    import fastrnn

    code = np.dtype(native).newbyteorder("S").str       # '>f8' on a little-endian machine
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _BYTE_ORDER_SCRIPT, code,
                           os.path.dirname(os.path.abspath(__file__))],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode >= 0, (
        f"forward/backward with x of dtype {code!r} killed the interpreter with signal "
        f"{-proc.returncode} (memory corruption: the non-native dtype is used as the "
        f"compute dtype and the kernels treat it as float64).\nstderr: "
        f"{proc.stderr[-2000:]}")
    assert proc.returncode == 0, (f"forward/backward with x of dtype {code!r} failed "
                                  f"(exit code {proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {cell: r["max_error"] for cell, r in report.items() if r["max_error"] != 0}
    assert not bad, (f"x of dtype {code!r} gives results different from the same values in "
                     f"native byte order (max abs error per cell): {bad}")
    for cell, r in report.items():
        assert r["itemsizes"] == [np.dtype(native).itemsize], (cell, r)


@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_tensors_as_inputs(cell):
    torch = pytest.importorskip("torch")
    p = make_problem(cell, 12)
    up = upstream(cell, 12, (T, B, I, H))
    expected = full_run(cell, p, LENGTHS, True, *up)
    q = {k: None if v is None else torch.tensor(v) for k, v in p.items()}
    q["x"].requires_grad_(True)
    q["w_ih"].requires_grad_(True)
    uq = [None if a is None else torch.tensor(a) for a in up]
    got = full_run(cell, q, torch.as_tensor(LENGTHS), True, *uq)
    for r in [*got[:3], *got[3].values()]:
        assert r is None or type(r) is np.ndarray
    assert_runs_identical(got, expected)
    for k, v in q.items():
        if v is not None:
            np.testing.assert_array_equal(v.detach().numpy(), p[k])


# ----------------------------------------------------------------------------------------
# empty inputs
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64],
                         ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_zero_steps(cell, dtype, bias):
    """T == 0: y is (0, B, H), the final state is the initial one (a copy), backward
    passes dhT to dh0 (dcT to dc0) and gives zero weight/bias gradients."""
    G = CELLS[cell]
    shape = (0, 3, I, H)
    p = make_problem(cell, 13, shape, bias, dtype)
    before = snapshot(p)
    for training in (False, True):
        y, hT, cT, cache = forward(F, cell, p, training=training)
        assert y.shape == (0, 3, H) and y.dtype == dtype
        assert hT.dtype == dtype
        np.testing.assert_array_equal(hT, p["h0"])
        assert not np.shares_memory(hT, p["h0"])
        if cell == "lstm":
            assert cT.dtype == dtype
            np.testing.assert_array_equal(cT, p["c0"])
    dy, dhT, dcT = upstream(cell, 13, shape, "all", dtype)
    g = backward(F, cell, cache, dy, dhT, dcT)
    assert g["x"].shape == (0, 3, I) and g["x"].dtype == dtype
    np.testing.assert_array_equal(g["h0"], dhT)
    assert g["h0"].dtype == dtype
    if cell == "lstm":
        np.testing.assert_array_equal(g["c0"], dcT)
        assert g["c0"].dtype == dtype
    for k, s in (("w_ih", (G * H, I)), ("w_hh", (G * H, H)), ("b_ih", (G * H,)),
                 ("b_hh", (G * H,))):
        if not bias and k.startswith("b"):
            assert g[k] is None
            continue
        assert g[k].shape == s and g[k].dtype == dtype, k
        assert not np.any(g[k]), k
    assert_unmodified(before, [p])

    # None initial state and None upstream gradients: zeros
    pn = dict(p, h0=None, c0=None) if cell == "lstm" else dict(p, h0=None)
    y, hT, cT, cache = forward(F, cell, pn)
    assert hT.shape == (3, H) and hT.dtype == dtype and not np.any(hT)
    g = backward(F, cell, cache, None, None, None)
    assert g["h0"].shape == (3, H) and g["h0"].dtype == dtype and not np.any(g["h0"])
    if cell == "lstm":
        assert not np.any(cT) and not np.any(g["c0"])


@pytest.mark.parametrize("T_", [0, 4])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64],
                         ids=["f16", "f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_empty_batch(cell, dtype, T_):
    G = CELLS[cell]
    shape = (T_, 0, I, H)
    p = make_problem(cell, 14, shape, True, dtype)
    for lengths in (None, np.zeros(0, np.int64)):
        for training in (False, True):
            y, hT, cT, cache = forward(F, cell, p, lengths, True, training=training)
            assert y.shape == (T_, 0, H) and y.dtype == dtype
            assert hT.shape == (0, H) and hT.dtype == dtype
            if cell == "lstm":
                assert cT.shape == (0, H) and cT.dtype == dtype
        dy, dhT, dcT = upstream(cell, 14, shape, "all", dtype)
        g = backward(F, cell, cache, dy, dhT, dcT)
        assert g["x"].shape == (T_, 0, I) and g["x"].dtype == dtype
        assert g["h0"].shape == (0, H) and g["h0"].dtype == dtype
        for k, s in (("w_ih", (G * H, I)), ("w_hh", (G * H, H)), ("b_ih", (G * H,)),
                     ("b_hh", (G * H,))):
            assert g[k].shape == s and g[k].dtype == dtype, k
            assert not np.any(g[k]), k


# ----------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_deterministic(cell, dtype):
    shape = (20, 9, 7, 16)
    p = make_problem(cell, 15, shape, dtype=dtype)
    lengths = random_lengths(np.random.default_rng(15), 20, 9)
    up = upstream(cell, 15, shape, "all", dtype)
    for reverse in (False, True):
        a = full_run(cell, p, lengths, reverse, *up)
        b = full_run(cell, p, lengths, reverse, *up)
        assert_runs_identical(a, b)
        ya = forward(F, cell, p, lengths, reverse, training=False)
        yb = forward(F, cell, p, lengths, reverse, training=False)
        for u, v in zip(ya[:3], yb[:3]):
            if u is not None:
                np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_full_lengths_same_as_none(cell, reverse):
    p = make_problem(cell, 16)
    up = upstream(cell, 16, (T, B, I, H))
    a = full_run(cell, p, None, reverse, *up)
    for lengths in (np.full(B, T), np.full(B, T, np.int32), [T] * B):
        assert_runs_identical(full_run(cell, p, lengths, reverse, *up), a)


# ----------------------------------------------------------------------------------------
# large values
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_large_inputs(cell, dtype):
    """x, h0, c0 scaled by 50 saturate the gates: results finite and equal to the reference."""
    p = make_problem(cell, 17, dtype=dtype)
    for k in ("x", "h0", "c0"):
        if k in p:
            p[k] = (p[k] * 50).astype(dtype)
    up = upstream(cell, 17, (T, B, I, H), "all", dtype)
    for reverse in (False, True):
        y, hT, cT, g = full_run(cell, p, LENGTHS, reverse, *up)
        ry, rhT, rcT, rcache = forward(ref, cell, cast(p, np.float64), LENGTHS, reverse)
        rg = backward(ref, cell, rcache, *[None if a is None else a.astype(np.float64)
                                           for a in up])
        pairs = [("y", y, ry), ("hT", hT, rhT), ("cT", cT, rcT)]
        pairs += [("d" + k, g[k], rg[k]) for k in rg]
        for name, a, r in pairs:
            if r is None:
                continue
            assert np.all(np.isfinite(a)), name
            # magnitudes vary wildly between outputs (tanh'd) and gradients (times 50):
            # the absolute tolerance scales with the array
            scale = max(1.0, float(np.abs(r).max()))
            if dtype == np.float64:
                np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12 * scale, err_msg=name)
            else:
                np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru", "gru_noreset"])
def test_extreme_preactivations_no_nan(cell, dtype):
    """Everything scaled by 1e3 (pre-activations ~1e6, exp overflows): no NaN, no inf,
    outputs within the cells' ranges, and equal to the reference."""
    p = make_problem(cell, 18, dtype=dtype, scale=1e3)
    up = upstream(cell, 18, (T, B, I, H), "all", dtype)
    for reverse in (False, True):
        y, hT, cT, g = full_run(cell, p, LENGTHS, reverse, *up)
        for a in [y, hT, *g.values()]:
            assert np.all(np.isfinite(a))
        # tanh / o*tanh(c) are within [-1, 1]; a GRU state is a convex combination of
        # the previous state and tanh(.)
        bound = max(1.0, float(np.abs(p["h0"]).max())) if cell.startswith("gru") else 1.0
        assert np.all(np.abs(y) <= bound)
        ry = forward(ref, cell, cast(p, np.float64), LENGTHS, reverse)[0]
        np.testing.assert_allclose(y, ry, rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------------------
# the BLAS wrapper
# ----------------------------------------------------------------------------------------

GEMM_SHAPES = [(1, 1, 1), (5, 7, 3), (64, 33, 17), (3, 200, 129), (130, 1, 70)]


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.5, 2.0)])
@pytest.mark.parametrize("mnk", GEMM_SHAPES, ids=["x".join(map(str, s)) for s in GEMM_SHAPES])
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_blas_gemm(dtype, trans_a, trans_b, mnk, alpha, beta):
    """_blas._gemm(a, b, c, trans_a, trans_b, alpha, beta): c = alpha op(a) op(b) + beta c,
    in place.  (It takes C-contiguous 2-D arrays only and derives lda/ldb/ldc from their
    shapes, so leading dimensions larger than minimal cannot be passed.)"""
    m, n, k = mnk
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    a0, b0 = a.copy(), b.copy()
    out = _blas._gemm(a, b, c, trans_a, trans_b, alpha, beta)
    assert out is c
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    expected = alpha * (opa.astype(np.float64) @ opb.astype(np.float64)) + beta * c0
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(c, expected, **tol)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_blas_gemm_rejects_bad_arguments():
    a = np.ones((4, 3))
    b = np.ones((3, 5))
    with pytest.raises(ValueError):                 # inner dimensions differ
        _blas._gemm(a, np.ones((4, 5)), np.zeros((4, 5)))
    with pytest.raises(ValueError):                 # wrong output shape
        _blas._gemm(a, b, np.zeros((5, 4)))
    with pytest.raises(ValueError):                 # not C-contiguous
        _blas._gemm(np.ones((4, 6))[:, ::2], b, np.zeros((4, 5)))
    with pytest.raises(ValueError):                 # mixed dtypes
        _blas._gemm(a.astype(np.float32), b, np.zeros((4, 5)))
    with pytest.raises(TypeError):                  # unsupported dtype
        _blas._gemm(a, b, np.zeros((4, 5), np.int64))


# ----------------------------------------------------------------------------------------
# per-step clipping of the carried gradient (clip_hidden_grad)

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("lengths_on", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_clip_hidden_grad_matches_reference(cell, lengths_on, reverse):
    rng = np.random.default_rng(11)
    p = make_problem(cell, 3, scale=1.5)
    lengths = random_lengths(rng, T, B) if lengths_on else None
    dy, dhT, dcT = upstream(cell, 4, (T, B, I, H))
    dy, dhT = dy * 5, dhT * 5                       # large enough for the clip to act
    clip = 0.05
    out = forward(F, cell, p, lengths, reverse)
    ref_out = forward(ref, cell, p, lengths, reverse)
    got = backward(F, cell, out[-1], dy, dhT, dcT, clip_hidden_grad=clip)
    want = backward(ref, cell, ref_out[-1], dy, dhT, dcT, clip_hidden_grad=clip)
    unclipped = backward(ref, cell, forward(ref, cell, p, lengths, reverse)[-1], dy, dhT, dcT)
    for name, a in got.items():
        if a is not None:
            np.testing.assert_allclose(a, want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    assert not np.allclose(want["w_hh"], unclipped["w_hh"])      # the clip did act
    huge = backward(F, cell, forward(F, cell, p, lengths, reverse)[-1], dy, dhT, dcT,
                    clip_hidden_grad=1e30)
    for name, a in huge.items():
        if a is not None:
            np.testing.assert_allclose(a, unclipped[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_clip_hidden_grad_rejects_bad_values(bad):
    p = make_problem("lstm", 0)
    out = forward(F, "lstm", p)
    with pytest.raises(ValueError, match="clip_hidden_grad must be"):
        F.lstm_backward(None, None, None, out[-1], clip_hidden_grad=bad)


# ----------------------------------------------------------------------------------------
# padded steps and the lengths array (reliability: issue 12)

@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_non_finite_padding_never_reaches_a_result(cell, reverse):
    p = make_problem(cell, 3, (6, 3, 4, 5))
    lengths = np.array([6, 2, 4])
    clean = dict(p, x=p["x"].copy())
    for b, n in enumerate(lengths):
        clean["x"][n:, b] = 0.0
        p["x"][n:, b] = [np.nan, np.inf, -np.inf][b % 3]
    dy = np.ones((6, 3, 5))
    results = []
    for prob in (p, clean):
        y, hT, cT, cache = forward(F, cell, prob, lengths=lengths, reverse=reverse)
        g = backward(F, cell, cache, dy, None, None)
        results.append((y, hT, g))
    (y, hT, g), (y0, hT0, g0) = results
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(hT, hT0)
    for k, v in g.items():
        if v is not None:
            np.testing.assert_array_equal(v, g0[k], err_msg=k)
    assert np.isnan(p["x"][2:, 1]).all() or np.isinf(p["x"][2:, 1]).all()   # x untouched


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_changing_lengths_between_forward_and_backward_changes_nothing(cell):
    p = make_problem(cell, 4, (7, 4, 3, 5))
    dy = np.ones((7, 4, 5))
    ref_lengths = np.array([7, 1, 4, 2])
    y, _, _, cache = forward(F, cell, p, lengths=ref_lengths.copy())
    expect = backward(F, cell, cache, dy, None, None)
    mine = ref_lengths.copy()
    y, _, _, cache = forward(F, cell, p, lengths=mine)
    mine[:] = [2, 7, 7, 7]                          # the caller reuses their array
    got = backward(F, cell, cache, dy, None, None)
    for k, v in expect.items():
        if v is not None:
            np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_empty_lengths_list_for_an_empty_batch():
    p = make_problem("gru", 0, (3, 0, 2, 4))
    y, hT, _, _ = forward(F, "gru", p, lengths=[])
    assert y.shape == (3, 0, 4) and hT.shape == (0, 4)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_non_finite_padding_in_inference(cell):
    p = make_problem(cell, 5, (6, 3, 4, 5))
    lengths = np.array([6, 2, 4])
    y0, h0, c0, _ = forward(F, cell, p, lengths=lengths, training=False)
    for b, n in enumerate(lengths):
        p["x"][n:, b] = np.nan
    y, h, c, _ = forward(F, cell, p, lengths=lengths, training=False)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(h, h0)
