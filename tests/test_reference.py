"""Tests of the NumPy reference implementation (fastrnn.reference), independent of the kernels.

* an independent, deliberately naive per-row / per-step forward (the only forward check for
  the GRU with reset_after=False, which has no PyTorch twin);
* float64 five-point finite-difference checks of every gradient;
* parity with torch.nn.RNN / LSTM / GRU (outputs, final states, all gradients), including
  the reverse direction (bidirectional=True) and packed variable-length sequences;
* float32 vs float64 agreement and the None / no-bias conventions.
"""
import numpy as np
import pytest

from fastrnn import reference as ref
import problems

T, B, I, H = 5, 4, 3, 4
LENGTHS = np.array([3, 1, 5, 2])  # unsorted; contains 1 and T

CELLS = problems.GATES          # name -> number of gate blocks
TORCH_CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


# ---------------------------------------------------------------------------------------
# driving the reference uniformly
# ---------------------------------------------------------------------------------------

def make_problem(cell, seed, bias=True, dtype=np.float64, scale=0.5):
    return problems.make_problem(cell, seed, (T, B, I, H), bias, dtype, scale)


def forward(cell, p, lengths=None, reverse=False):
    """Returns (y, hT, cT or None, cache)."""
    return problems.forward(ref, cell, p, lengths, reverse)


def backward(cell, cache, dy, dhT, dcT=None):
    """The gradients as a dict keyed like the problem dict."""
    return problems.as_dict(problems.backward(ref, cell, cache, dy, dhT, dcT))


def sig(a):
    return 1 / (1 + np.exp(-a))


def naive_forward(cell, p, lengths=None, reverse=False):
    """One row and one step at a time, straight from the equations (no masks).

    Returns y, hT, cT and the list of ReLU pre-activations that were used.
    """
    x = p["x"]
    G = CELLS[cell]
    Wi = np.split(p["w_ih"], G)
    Wh = np.split(p["w_hh"], G)
    bi = np.split(p["b_ih"] if p["b_ih"] is not None else np.zeros(G * H), G)
    bh = np.split(p["b_hh"] if p["b_hh"] is not None else np.zeros(G * H), G)
    y = np.zeros((T, B, H))
    hT = np.zeros((B, H))
    cT = np.zeros((B, H))
    pre = []
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        h = p["h0"][b]
        c = p["c0"][b] if cell == "lstm" else None
        for t in (reversed(range(L)) if reverse else range(L)):
            xt = x[t, b]
            if cell.startswith("rnn"):
                a = Wi[0] @ xt + bi[0] + Wh[0] @ h + bh[0]
                if cell == "rnn_tanh":
                    h = np.tanh(a)
                else:
                    pre.append(a)
                    h = np.maximum(a, 0)
            elif cell == "lstm":
                i, f, g, o = (Wi[k] @ xt + bi[k] + Wh[k] @ h + bh[k] for k in range(4))
                c = sig(f) * c + sig(i) * np.tanh(g)
                h = sig(o) * np.tanh(c)
            else:
                r = sig(Wi[0] @ xt + bi[0] + Wh[0] @ h + bh[0])
                z = sig(Wi[1] @ xt + bi[1] + Wh[1] @ h + bh[1])
                if cell == "gru":
                    n = np.tanh(Wi[2] @ xt + bi[2] + r * (Wh[2] @ h + bh[2]))
                else:
                    n = np.tanh(Wi[2] @ xt + bi[2] + Wh[2] @ (r * h) + bh[2])
                h = (1 - z) * n + z * h
            y[t, b] = h
        hT[b] = h
        if cell == "lstm":
            cT[b] = c
    return y, hT, (cT if cell == "lstm" else None), pre


def relu_seed(seed, bias, lengths, reverse, margin=0.05):
    """First seed >= `seed` whose ReLU pre-activations all stay `margin` away from the kink."""
    for s in range(seed, seed + 1000):
        p = make_problem("rnn_relu", s, bias)
        pre = naive_forward("rnn_relu", p, lengths, reverse)[3]
        if np.min(np.abs(np.concatenate(pre))) > margin:
            return s
    raise AssertionError("no kink-free seed found")


# ---------------------------------------------------------------------------------------
# forward semantics
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_naive(cell, reverse, lengths, bias):
    p = make_problem(cell, 1, bias)
    y, hT, cT, _ = forward(cell, p, lengths, reverse)
    ny, nhT, ncT, _ = naive_forward(cell, p, lengths, reverse)
    np.testing.assert_allclose(y, ny, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hT, nhT, rtol=1e-12, atol=1e-14)
    if cell == "lstm":
        np.testing.assert_allclose(cT, ncT, rtol=1e-12, atol=1e-14)
    if lengths is not None:
        pad = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(y[pad] == 0)


def test_gru_variants_differ():
    # guard against the two GRU forms accidentally computing the same thing
    p = make_problem("gru", 2)
    assert not np.allclose(forward("gru", p)[0], forward("gru_noreset", p)[0])


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_full_lengths_same_as_none(cell, reverse):
    p = make_problem(cell, 3)
    a = forward(cell, p, None, reverse)
    b = forward(cell, p, np.full(B, T), reverse)
    for u, v in zip(a[:3], b[:3]):
        if u is not None:
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("cell", list(CELLS))
def test_none_conventions(cell):
    """h0/c0 None = zeros; dy/dhT/dcT None = zeros; no bias -> db None; inputs unmodified."""
    p = make_problem(cell, 4)
    pz = dict(p, h0=np.zeros((B, H)))
    pn = dict(p, h0=None)
    if cell == "lstm":
        pz["c0"] = np.zeros((B, H))
        pn["c0"] = None
    frozen = {k: v.copy() for k, v in pz.items() if v is not None}
    yz, hz, cz, cache_z = forward(cell, pz, LENGTHS, True)
    yn, hn, cn, cache_n = forward(cell, pn, LENGTHS, True)
    np.testing.assert_array_equal(yz, yn)
    np.testing.assert_array_equal(hz, hn)

    rng = np.random.default_rng(5)
    dy = rng.standard_normal((T, B, H))
    zeros = np.zeros((B, H))
    gz = backward(cell, cache_z, dy, zeros, zeros)
    gn = backward(cell, cache_n, dy, None, None)
    for k in gz:
        np.testing.assert_array_equal(gz[k], gn[k])
    assert gn["h0"].shape == (B, H)
    # dy None == zeros
    g0 = backward(cell, cache_n, None, hz, None)
    g1 = backward(cell, cache_n, np.zeros((T, B, H)), hz, None)
    for k in g0:
        np.testing.assert_array_equal(g0[k], g1[k])
    for k, v in frozen.items():
        np.testing.assert_array_equal(pz[k], v)

    # no bias
    pb = dict(p, b_ih=None, b_hh=None)
    _, _, _, cache = forward(cell, pb)
    g = backward(cell, cache, dy, None, None)
    assert g["b_ih"] is None and g["b_hh"] is None
    assert g["w_ih"].shape == p["w_ih"].shape and g["w_hh"].shape == p["w_hh"].shape


# ---------------------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------------------

def _loss_weights(cell, seed):
    rng = np.random.default_rng(seed + 1000)
    Ry = rng.standard_normal((T, B, H))
    Rh = rng.standard_normal((B, H))
    Rc = rng.standard_normal((B, H)) if cell == "lstm" else None
    return Ry, Rh, Rc


def _loss(cell, p, lengths, reverse, Ry, Rh, Rc):
    y, hT, cT, _ = forward(cell, p, lengths, reverse)
    L = np.sum(y * Ry) + np.sum(hT * Rh)
    if cT is not None:
        L += np.sum(cT * Rc)
    return L


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradients_finite_differences(cell, reverse, lengths, bias):
    seed = 10
    if cell == "rnn_relu":
        seed = relu_seed(seed, bias, lengths, reverse)
    p = make_problem(cell, seed, bias)
    Ry, Rh, Rc = _loss_weights(cell, seed)
    _, _, _, cache = forward(cell, p, lengths, reverse)
    grads = backward(cell, cache, Ry, Rh, Rc)

    eps = 1e-3
    for name, v in p.items():
        if v is None:
            assert grads[name] is None
            continue
        fd = np.empty(v.size)
        flat = v.reshape(-1)  # a view: perturb in place, then restore
        for j in range(v.size):
            orig = flat[j]
            f = []
            for k in (2, 1, -1, -2):
                flat[j] = orig + k * eps
                f.append(_loss(cell, p, lengths, reverse, Ry, Rh, Rc))
            flat[j] = orig
            fd[j] = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * eps)
        an = grads[name]
        assert an.shape == v.shape, name
        np.testing.assert_allclose(an.reshape(-1), fd, rtol=1e-7, atol=1e-9, err_msg=name)


# ---------------------------------------------------------------------------------------
# float32
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_float32_agrees_with_float64(cell, reverse):
    p64 = make_problem(cell, 20)
    p32 = {k: None if v is None else v.astype(np.float32) for k, v in p64.items()}
    out64 = forward(cell, p64, LENGTHS, reverse)
    out32 = forward(cell, p32, LENGTHS, reverse)
    for a, b in zip(out32[:3], out64[:3]):
        if a is not None:
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    Ry, Rh, Rc = _loss_weights(cell, 20)
    g64 = backward(cell, out64[3], Ry, Rh, Rc)
    g32 = backward(cell, out32[3], Ry.astype(np.float32), Rh.astype(np.float32),
                   None if Rc is None else Rc.astype(np.float32))
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-5, err_msg=k)


# ---------------------------------------------------------------------------------------
# parity with PyTorch
# ---------------------------------------------------------------------------------------

def _torch_module(torch, cell, bias, bidirectional):
    kw = dict(input_size=I, hidden_size=H, bias=bias, bidirectional=bidirectional,
              dtype=torch.float64)
    if cell.startswith("rnn"):
        return torch.nn.RNN(nonlinearity=cell[4:], **kw)
    return torch.nn.LSTM(**kw) if cell == "lstm" else torch.nn.GRU(**kw)


_TORCH_NAMES = dict(w_ih="weight_ih_l0", w_hh="weight_hh_l0", b_ih="bias_ih_l0",
                    b_hh="bias_hh_l0")


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_torch_parity(cell, bidirectional, lengths, bias):
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    D = 2 if bidirectional else 1
    # one problem per direction (the x of the second one is unused)
    probs = [make_problem(cell, 30 + d, bias) for d in range(D)]
    x = probs[0]["x"]
    for q in probs[1:]:
        q["x"] = x
    rng = np.random.default_rng(40)
    Ry = rng.standard_normal((T, B, D * H))
    Rh = rng.standard_normal((D, B, H))
    Rc = rng.standard_normal((D, B, H))

    # ---- torch
    mod = _torch_module(torch, cell, bias, bidirectional)
    with torch.no_grad():
        for d, q in enumerate(probs):
            suffix = "_reverse" if d == 1 else ""
            for k, tname in _TORCH_NAMES.items():
                if q[k] is not None:
                    getattr(mod, tname + suffix).copy_(torch.from_numpy(q[k]))
    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(np.stack([q["h0"] for q in probs]), requires_grad=True)
    if cell == "lstm":
        tc0 = torch.tensor(np.stack([q["c0"] for q in probs]), requires_grad=True)
        hx = (th0, tc0)
    else:
        hx = th0
    if lengths is None:
        out, hn = mod(tx, hx)
    else:
        packed = pack_padded_sequence(tx, torch.as_tensor(lengths), enforce_sorted=False)
        out, hn = mod(packed, hx)
        out, _ = pad_packed_sequence(out, total_length=T)
    if cell == "lstm":
        hn, cn = hn
    loss = (out * torch.from_numpy(Ry)).sum() + (hn * torch.from_numpy(Rh)).sum()
    if cell == "lstm":
        loss = loss + (cn * torch.from_numpy(Rc)).sum()
    loss.backward()

    # ---- reference, direction by direction
    dx = np.zeros_like(x)
    for d, q in enumerate(probs):
        y, hT, cT, cache = forward(cell, q, lengths, reverse=(d == 1))
        sl = slice(d * H, (d + 1) * H)
        np.testing.assert_allclose(y, out.detach().numpy()[:, :, sl], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hT, hn.detach().numpy()[d], rtol=1e-10, atol=1e-12)
        if cell == "lstm":
            np.testing.assert_allclose(cT, cn.detach().numpy()[d], rtol=1e-10, atol=1e-12)
        g = backward(cell, cache, Ry[:, :, sl], Rh[d], Rc[d])
        dx += g["x"]
        np.testing.assert_allclose(g["h0"], th0.grad.numpy()[d], rtol=1e-10, atol=1e-12)
        if cell == "lstm":
            np.testing.assert_allclose(g["c0"], tc0.grad.numpy()[d], rtol=1e-10, atol=1e-12)
        suffix = "_reverse" if d == 1 else ""
        for k, tname in _TORCH_NAMES.items():
            if q[k] is None:
                assert g[k] is None
                continue
            tg = getattr(mod, tname + suffix).grad.numpy()
            np.testing.assert_allclose(g[k], tg, rtol=1e-10, atol=1e-12, err_msg=k + suffix)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
