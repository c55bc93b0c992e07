"""LayerNorm LSTM/GRU, variational recurrent dropout and zoneout in the fused kernels
(engine/variants.pyx through fastrnn.functional): against the NumPy reference with the masks
passed explicitly, float64 finite differences of every input, state and parameter (gains and
biases included) for the mask drawn, thread-count independence, the plain kernels when the
masks do nothing, torch autograd of the same math when installed, and bad input."""
import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from gradcheck import assert_close_fd

TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-11, atol=1e-12)}
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "ln_lstm": 4, "ln_gru": 3}
CELLS = list(GATES)
LENGTHS = [5, 1, 3, 5, 2]


def problem(cell, T=5, B=5, I=3, H=6, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    p = dict(x=rng.standard_normal((T, B, I)), h0=rng.standard_normal((B, H)) * 0.5,
             c0=rng.standard_normal((B, H)) * 0.5,
             w_ih=rng.standard_normal((G * H, I)) * 0.6,
             w_hh=rng.standard_normal((G * H, H)) * 0.6 / np.sqrt(H),
             b_ih=rng.standard_normal(G * H) * 0.1, b_hh=rng.standard_normal(G * H) * 0.1,
             dy=rng.standard_normal((T, B, H)), dhT=rng.standard_normal((B, H)),
             dcT=rng.standard_normal((B, H)))
    if cell.startswith("ln_"):
        p.update(ln_ih_weight=1 + 0.2 * rng.standard_normal(G * H),
                 ln_ih_bias=0.1 * rng.standard_normal(G * H),
                 ln_hh_weight=1 + 0.2 * rng.standard_normal(G * H),
                 ln_hh_bias=0.1 * rng.standard_normal(G * H))
        if cell == "ln_lstm":
            p.update(ln_c_weight=1 + 0.2 * rng.standard_normal(H),
                     ln_c_bias=0.1 * rng.standard_normal(H))
    p = {k: v.astype(dtype) for k, v in p.items()}
    masks = dict(recurrent_mask=((rng.random((B, H)) > 0.3) / 0.7).astype(dtype),
                 zoneout_h=(rng.random((T, B, H)) < 0.3).astype(dtype),
                 zoneout_c=(rng.random((T, B, H)) < 0.4).astype(dtype))
    return p, masks


def has_c(cell):
    return cell in ("lstm", "ln_lstm")


def ln_names(cell):
    if not cell.startswith("ln_"):
        return ()
    names = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias")
    return names + (("ln_c_weight", "ln_c_bias") if cell == "ln_lstm" else ())


def args(cell):
    return (("x", "h0") + (("c0",) if has_c(cell) else ())
            + ("w_ih", "w_hh", "b_ih", "b_hh") + ln_names(cell))


def fwd(cell, p, **kw):
    """(y, hT, cT or None, cache) from the kernels."""
    a = [p[k] for k in args(cell)]
    if cell.startswith("rnn"):
        y, hT, cache = F.rnn_forward(*a, nonlinearity=cell[4:], **kw)
        return y, hT, None, cache
    if cell == "lstm":
        return F.lstm_forward(*a, **kw)
    if cell == "ln_lstm":
        return F.layernorm_lstm_forward(*a, **kw)
    y, hT, cache = (F.gru_forward if cell == "gru" else F.layernorm_gru_forward)(*a, **kw)
    return y, hT, None, cache


def bwd(cell, cache, p, **kw):
    if has_c(cell):
        back = F.lstm_backward if cell == "lstm" else F.layernorm_lstm_backward
        return back(p["dy"], p["dhT"], p["dcT"], cache, **kw)
    back = {"rnn_tanh": F.rnn_backward, "rnn_relu": F.rnn_backward, "gru": F.gru_backward,
            "ln_gru": F.layernorm_gru_backward}[cell]
    return back(p["dy"], p["dhT"], cache, **kw)


def ref(cell, p, **kw):
    q = {k: v.astype(np.float64) for k, v in p.items()}
    base = {"ln_lstm": "lstm", "ln_gru": "gru"}.get(cell, cell)
    ln = [q[k] for k in ln_names(cell)] or None
    return R.variant_forward(base, q["x"], q["h0"], q.get("c0"), q["w_ih"], q["w_hh"],
                             q["b_ih"], q["b_hh"], ln=ln, **kw)


def options(cell, masks):
    """Option sets to test for a cell: each regularizer alone and all together."""
    out = {"none": {}} if cell.startswith("ln_") else {}
    out["rdrop"] = dict(recurrent_mask=masks["recurrent_mask"])
    out["zone"] = dict(zoneout_h=masks["zoneout_h"])
    out["zone_eval"] = dict(zoneout_h=0.3)
    if has_c(cell):
        out["zone_c"] = dict(zoneout_c=masks["zoneout_c"])
        out["zone_c_eval"] = dict(zoneout_h=0.25, zoneout_c=0.1)
        out["all"] = dict(recurrent_mask=masks["recurrent_mask"], zoneout_h=masks["zoneout_h"],
                          zoneout_c=masks["zoneout_c"])
    else:
        out["all"] = dict(recurrent_mask=masks["recurrent_mask"], zoneout_h=masks["zoneout_h"])
    return out


def cases():
    for cell in CELLS:
        _, masks = problem(cell)
        for name in options(cell, masks):
            yield cell, name


CASES = list(cases())


def loss_fn(cell, p, kw):
    def loss():
        y, hT, cT, _ = fwd(cell, p, training=False, **kw)
        out = np.sum(y * p["dy"]) + np.sum(hT * p["dhT"])
        if cT is not None:
            out += np.sum(cT * p["dcT"])
        return float(out)
    return loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "ragged"])
@pytest.mark.parametrize("cell,opt", CASES, ids=[f"{c}-{o}" for c, o in CASES])
def test_matches_reference(cell, opt, lengths, reverse, dtype):
    p, masks = problem(cell, dtype=dtype)
    kw = options(cell, masks)[opt]
    for training in (True, False):
        y, hT, cT, _ = fwd(cell, p, lengths=lengths, reverse=reverse, training=training, **kw)
        ry, rh, rc = ref(cell, p, lengths=lengths, reverse=reverse, **kw)
        np.testing.assert_allclose(y, ry, **TOL[dtype])
        np.testing.assert_allclose(hT, rh, **TOL[dtype])
        if has_c(cell):
            np.testing.assert_allclose(cT, rc, **TOL[dtype])
        assert y.dtype == dtype


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "ragged"])
@pytest.mark.parametrize("cell,opt", CASES, ids=[f"{c}-{o}" for c, o in CASES])
def test_gradients_match_finite_differences(cell, opt, lengths, reverse):
    p, masks = problem(cell, seed=1)
    kw = dict(options(cell, masks)[opt], lengths=lengths, reverse=reverse)
    *_, cache = fwd(cell, p, **kw)
    g = bwd(cell, cache, p)
    names = {"x": "dx", "h0": "dh0", "c0": "dc0", "w_ih": "dw_ih", "w_hh": "dw_hh",
             "b_ih": "db_ih", "b_hh": "db_hh"}
    names.update({k: "d" + k for k in ln_names(cell)})
    rng = np.random.default_rng(2)
    for arg in args(cell):
        assert_close_fd(getattr(g, names[arg]), p[arg], loss_fn(cell, p, kw), rng, arg,
                        rtol=1e-6, atol=1e-8, n_entries=10)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_with_clipping_and_without_dy(cell):
    """clip_hidden_grad clamps the carried gradient as in the plain kernels (checked
    against a clip so large that nothing is clamped, and with dy, dhT absent)."""
    p, masks = problem(cell, seed=4)
    kw = options(cell, masks)["all"]
    g_full = bwd(cell, fwd(cell, p, **kw)[3], p)
    g_big = bwd(cell, fwd(cell, p, **kw)[3], p, clip_hidden_grad=1e6)
    for a, b in zip(g_full, g_big):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    g_small = bwd(cell, fwd(cell, p, **kw)[3], p, clip_hidden_grad=1e-3)
    assert not np.allclose(g_small.dw_hh, g_full.dw_hh)
    cache = fwd(cell, p, **kw)[3]
    if has_c(cell):
        g = (F.lstm_backward if cell == "lstm" else F.layernorm_lstm_backward)(
            None, None, None, cache)
    else:
        g = {"ln_gru": F.layernorm_gru_backward, "gru": F.gru_backward}.get(
            cell, F.rnn_backward)(None, None, cache)
    assert not np.any(g.dx) and not np.any(g.dw_hh)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_neutral_masks_give_the_plain_cell(cell):
    """A mask of ones and zoneout masks of zeros run the variants kernel and give the plain
    kernel's results and gradients (up to summation order)."""
    p, masks = problem(cell, seed=5)
    ones = np.ones_like(masks["recurrent_mask"])
    zeros = np.zeros_like(masks["zoneout_h"])
    kw = dict(recurrent_mask=ones, zoneout_h=zeros)
    if has_c(cell):
        kw["zoneout_c"] = zeros
    for lengths in (None, LENGTHS):
        got = fwd(cell, p, lengths=lengths, **kw)
        plain = fwd(cell, p, lengths=lengths)
        assert type(got[3].variant).__name__ == "_Variant"
        for a, b in zip(got[:3], plain[:3]):
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        for a, b in zip(bwd(cell, got[3], p), bwd(cell, plain[3], p)):
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("cell", ["ln_lstm", "ln_gru"])
def test_layer_norm_with_unit_gain_zero_bias_is_invariant_to_weight_scale(cell):
    """What LayerNorm is for: scaling W_ih or W_hh (rows scaled together) leaves the
    output unchanged, which the plain cell is not."""
    p, _ = problem(cell, seed=6)
    for k in ln_names(cell):
        p[k] = np.ones_like(p[k]) if k.endswith("weight") else np.zeros_like(p[k])
    y = fwd(cell, p, training=False, eps=1e-12)[0]
    q = dict(p, w_ih=p["w_ih"] * 3.0, w_hh=p["w_hh"] * 0.25)
    np.testing.assert_allclose(fwd(cell, q, training=False, eps=1e-12)[0], y, rtol=1e-7,
                               atol=1e-9)
    assert not np.allclose(fwd(cell.replace("ln_", ""), q, training=False)[0],
                           fwd(cell.replace("ln_", ""), p, training=False)[0], atol=1e-3)


@pytest.fixture
def restore_num_threads():
    import fastrnn
    from fastrnn.engine.threads import using
    with using(fastrnn.get_num_threads()) as _:
        fastrnn.set_num_threads(None)
        yield fastrnn


PLANS = [(1, "rows"), (1, "units"), (2, "units"), (3, "units"), (2, "rows"), (3, "rows")]


@pytest.mark.parametrize("fused", [False, True], ids=["blas", "fused"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_results_do_not_depend_on_thread_count_or_scheme(cell, dtype, fused,
                                                         restore_num_threads, monkeypatch):
    """Bit-identical on 1, 2 and 3 threads, the batch split (9 rows as 4+5, 3+3+3) or the
    hidden units (with LayerNorm: two or three barriers a step), H = 40 (several panel blocks, the
    last partial), lengths, both directions, training and inference; the input projection
    by BLAS or fused into the kernel (packed W_ih)."""
    fastrnn = restore_num_threads
    monkeypatch.setattr(F, "_force_fused", fused)
    results = {}
    lengths = [7, 1, 3, 7, 5, 2, 6, 4, 7]
    for n, scheme in PLANS:
        monkeypatch.setattr(F, "_force_plan",
                            lambda x, w, threads, rows=scheme == "rows": (threads, rows))
        fastrnn.set_num_threads(n)
        out = []
        for reverse in (False, True):
            p, masks = problem(cell, T=7, B=9, I=5, H=40, dtype=dtype, seed=7)
            kw = dict(options(cell, masks)["all"], lengths=lengths, reverse=reverse)
            y, hT, cT, cache = fwd(cell, p, **kw)
            out += [y, hT, cT] + list(bwd(cell, cache, p, clip_hidden_grad=0.5))
            out += list(fwd(cell, p, training=False, **kw)[:3])
        results[n, scheme] = [a for a in out if a is not None]
    for plan in PLANS[1:]:
        for a, b in zip(results[plan], results[PLANS[0]]):
            np.testing.assert_array_equal(a, b, err_msg=f"{plan} vs one thread")


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell", CELLS)
def test_fused_and_blas_input_projections_agree(cell, reverse, monkeypatch):
    """The input projection fused into the kernel and made by BLAS give the reference's
    results, in training and in inference over several chunks of steps (T*B > 1024 rows),
    with every option at once and ragged lengths."""
    T, B = 300, 5
    p, masks = problem(cell, T=T, B=B, I=4, H=7, seed=8)
    lengths = [T, 1, 170, T - 1, 257]
    kw = dict(options(cell, masks)["all"], lengths=lengths, reverse=reverse)
    want = ref(cell, p, **kw)
    for fused in (False, True):
        monkeypatch.setattr(F, "_force_fused", fused)
        for training in (True, False):
            got = fwd(cell, p, training=training, **kw)
            for a, b in zip(got[:3], want[:3]):
                if a is not None:
                    np.testing.assert_allclose(a, b, **TOL[np.float64],
                                               err_msg=f"fused={fused} training={training}")


def test_empty_inputs():
    p, masks = problem("ln_lstm", T=0, B=3)
    y, hT, cT, cache = fwd("ln_lstm", p, zoneout_h=0.2)
    assert y.shape == (0, 3, 6)
    np.testing.assert_array_equal(hT, p["h0"])
    g = F.layernorm_lstm_backward(None, p["dhT"], None, cache)
    np.testing.assert_array_equal(g.dh0, p["dhT"])
    assert g.dln_c_weight.shape == (6,) and not g.dln_c_weight.any()


# ---- bad input --------------------------------------------------------------------------

def test_bad_zoneout_and_masks():
    p, masks = problem("lstm")
    for bad in (1.0, -0.1, 2, np.nan):
        with pytest.raises(ValueError, match="zoneout_h must be a probability in \\[0, 1\\)"):
            fwd("lstm", p, zoneout_h=bad)
    with pytest.raises(ValueError, match="zoneout_c must have shape \\(T, B, H\\)"):
        fwd("lstm", p, zoneout_c=np.zeros((5, 5, 7)))
    with pytest.raises(ValueError, match="only 0/1 values"):
        fwd("lstm", p, zoneout_h=np.full((5, 5, 6), 0.5))
    with pytest.raises(TypeError, match="zoneout_h must be a probability or a 0/1 array"):
        fwd("lstm", p, zoneout_h=np.array([["a"]]))
    with pytest.raises(ValueError, match="recurrent_mask must have shape \\(B, H\\)"):
        fwd("lstm", p, recurrent_mask=np.ones((5, 7)))
    with pytest.raises(ValueError, match="reset_after=True"):
        F.gru_forward(*(problem("gru")[0][k] for k in args("gru")), reset_after=False,
                      zoneout_h=0.1)


def test_bad_layer_norm_arguments():
    p, _ = problem("ln_lstm")
    with pytest.raises(ValueError, match="ln_c_weight must have shape \\(H,\\)"):
        fwd("ln_lstm", dict(p, ln_c_weight=np.ones(7)))
    with pytest.raises(ValueError, match="ln_hh_bias must have shape \\(4\\*H,\\)"):
        fwd("ln_lstm", dict(p, ln_hh_bias=np.ones(6)))
    with pytest.raises(TypeError, match="ln_ih_weight must be an array"):
        fwd("ln_lstm", dict(p, ln_ih_weight=None))
    for bad in (0, -1e-5, np.inf, True):
        with pytest.raises(ValueError, match="eps must be a positive finite number"):
            fwd("ln_lstm", p, eps=bad)
    *_, cache = fwd("ln_lstm", p)
    with pytest.raises(TypeError, match="needs the cache of lstm_forward"):
        F.lstm_backward(None, None, None, cache)


# ---- torch: the same math written with its operators ------------------------------------

@pytest.mark.parametrize("cell", ["ln_lstm", "ln_gru"])
@pytest.mark.parametrize("zoneout", [False, True], ids=["plain", "zoneout"])
def test_matches_torch_autograd(cell, zoneout):
    """A LayerNorm LSTM / GRU written with torch.nn.functional.layer_norm over per-step
    cell code (what a torch user writes today), float64 autograd: outputs and every
    gradient agree with the kernels'."""
    torch = pytest.importorskip("torch")
    p, masks = problem(cell, T=6, B=4, I=3, H=5, seed=8)
    kw = dict(recurrent_mask=masks["recurrent_mask"])
    if zoneout:
        kw["zoneout_h"] = masks["zoneout_h"]
        if has_c(cell):
            kw["zoneout_c"] = masks["zoneout_c"]
    y, hT, cT, cache = fwd(cell, p, **kw)
    g = bwd(cell, cache, p)

    t = {k: torch.tensor(v, requires_grad=True) for k, v in p.items() if not k.startswith("d")}
    m = {k: torch.tensor(v) for k, v in kw.items()}
    H = p["h0"].shape[1]
    ln = torch.nn.functional.layer_norm
    h, c = t["h0"], t.get("c0")
    ys = []
    for step in range(p["x"].shape[0]):
        a_x = ln(t["x"][step] @ t["w_ih"].T, (t["w_ih"].shape[0],), t["ln_ih_weight"],
                 t["ln_ih_bias"], 1e-5) + t["b_ih"]
        a_h = ln((h * m["recurrent_mask"]) @ t["w_hh"].T, (t["w_hh"].shape[0],),
                 t["ln_hh_weight"], t["ln_hh_bias"], 1e-5) + t["b_hh"]
        if cell == "ln_lstm":
            i, f, gg, o = (a_x + a_h).split(H, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            h_new = torch.sigmoid(o) * torch.tanh(ln(c_new, (H,), t["ln_c_weight"],
                                                     t["ln_c_bias"], 1e-5))
            if zoneout:
                c_new = torch.where(m["zoneout_c"][step] != 0, c, c_new)
            c = c_new
        else:
            xr, xz, xn = a_x.split(H, dim=1)
            hr, hz, hn = a_h.split(H, dim=1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h_new = (1 - z) * n + z * h
        if zoneout:
            h_new = torch.where(m["zoneout_h"][step] != 0, h, h_new)
        h = h_new
        ys.append(h)
    Y = torch.stack(ys)
    loss = (Y * torch.tensor(p["dy"])).sum() + (h * torch.tensor(p["dhT"])).sum()
    if c is not None:
        loss = loss + (c * torch.tensor(p["dcT"])).sum()
    loss.backward()
    np.testing.assert_allclose(y, Y.detach().numpy(), rtol=1e-12, atol=1e-13)
    names = {"x": "dx", "h0": "dh0", "c0": "dc0", "w_ih": "dw_ih", "w_hh": "dw_hh",
             "b_ih": "db_ih", "b_hh": "db_hh"}
    names.update({k: "d" + k for k in ln_names(cell)})
    for arg, field in names.items():
        if arg in args(cell):
            np.testing.assert_allclose(getattr(g, field), t[arg].grad.numpy(), rtol=1e-10,
                                       atol=1e-12, err_msg=arg)


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_bench_torch_runners_compute_the_same_math(mode):
    """`fastrnn bench` compares the regularized cells with torch running the same math:
    the same outputs (inference) and input gradients (training), float32."""
    torch = pytest.importorskip("torch")
    from fastrnn import bench
    for cell in bench.REGULARIZED:
        p = bench.make_problem(cell, 4, 6, 3, 8)
        ours = bench.regularized_runner(cell, p, mode)()
        theirs = bench.torch_regularized_runner(torch, cell, p, mode)()
        a, b = (ours[0], theirs) if mode == "infer" else (ours.dx, theirs[0])
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=2e-5, err_msg=cell)
