"""The projection LSTM (functional.projection_lstm_forward / _backward, PyTorch's proj_size):
against the NumPy reference, float64 finite differences of every input, state and parameter,
every thread count, and torch.nn.LSTM(proj_size=P) when torch is installed."""
import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R
from gradcheck import assert_close_fd

ARGS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


def problem(T, B, I, H, P, dtype, seed=0, scale=0.6):
    rng = np.random.default_rng(seed)
    p = dict(x=rng.standard_normal((T, B, I)), h0=rng.standard_normal((B, P)) * scale,
             c0=rng.standard_normal((B, H)) * scale,
             w_ih=rng.standard_normal((4 * H, I)) * scale / np.sqrt(I),
             w_hh=rng.standard_normal((4 * H, P)) * scale / np.sqrt(P),
             w_hr=rng.standard_normal((P, H)) * scale / np.sqrt(H),
             b_ih=rng.standard_normal(4 * H) * 0.1, b_hh=rng.standard_normal(4 * H) * 0.1,
             dy=rng.standard_normal((T, B, P)), dhT=rng.standard_normal((B, P)),
             dcT=rng.standard_normal((B, H)))
    return {k: v.astype(dtype) for k, v in p.items()}


def run(mod, p, lengths=None, reverse=False, **kw):
    return mod.projection_lstm_forward(*(p[k] for k in ARGS), lengths=lengths, reverse=reverse,
                                       **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, [5, 1, 3, 5, 2]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("H,P", [(6, 3), (40, 17)])
def test_matches_reference(dtype, lengths, reverse, H, P):
    p = problem(5, 5, 3, H, P, dtype)
    q = {k: v.astype(np.float64) for k, v in p.items()}
    got, ref = run(F, p, lengths, reverse), run(R, q, lengths, reverse)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    for a, b in zip(got[:3], ref[:3]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)
    g = F.projection_lstm_backward(p["dy"], p["dhT"], p["dcT"], got[3])
    r = R.projection_lstm_backward(q["dy"], q["dhT"], q["dcT"], ref[3])
    assert type(g) is F.ProjectionLSTMGrads
    for name in g._fields:
        scale = max(1.0, float(np.abs(getattr(r, name)).max()))
        np.testing.assert_allclose(getattr(g, name), getattr(r, name), err_msg=name,
                                   rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * scale)


@pytest.mark.parametrize("lengths", [None, [4, 2, 1]], ids=["full", "ragged"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_finite_differences(lengths, reverse):
    p = problem(4, 3, 3, 6, 4, np.float64, seed=1, scale=0.9)
    rng = np.random.default_rng(2)

    def loss():
        y, hT, cT, _ = run(F, p, lengths, reverse, training=False)
        return float(np.sum(y * p["dy"]) + np.sum(hT * p["dhT"]) + np.sum(cT * p["dcT"]))

    g = F.projection_lstm_backward(p["dy"], p["dhT"], p["dcT"], run(F, p, lengths, reverse)[3])
    for name, grad in (("x", g.dx), ("h0", g.dh0), ("c0", g.dc0), ("w_ih", g.dw_ih),
                       ("w_hh", g.dw_hh), ("b_ih", g.db_ih), ("b_hh", g.db_hh),
                       ("w_hr", g.dw_hr)):
        assert_close_fd(grad, p[name], loss, rng, name, rtol=1e-6, atol=1e-8, n_entries=18)


def test_clip_hidden_grad_matches_reference():
    p = problem(6, 4, 3, 8, 5, np.float64)
    q = dict(p, dy=p["dy"] * 5)
    g = F.projection_lstm_backward(q["dy"], q["dhT"], None, run(F, q, [6, 2, 5, 6])[3],
                                   clip_hidden_grad=0.3)
    r = R.projection_lstm_backward(q["dy"], q["dhT"], None, run(R, q, [6, 2, 5, 6])[3],
                                   clip_hidden_grad=0.3)
    for name in g._fields:
        np.testing.assert_allclose(getattr(g, name), getattr(r, name), rtol=1e-11,
                                   atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_thread_count_bit_identical(dtype):
    from fastrnn.engine.threads import using
    p = problem(7, 9, 5, 40, 13, dtype)
    outs = []
    for n in (1, 2, 3):
        with using(n):
            out = []
            for reverse in (False, True):
                y, hT, cT, cache = run(F, p, [7, 1, 3, 7, 5, 2, 6, 4, 7], reverse)
                out += [y, hT, cT] + list(F.projection_lstm_backward(p["dy"], None, None,
                                                                     cache))
                out += list(run(F, p, None, reverse, training=False)[:3])
        outs.append(out)
    for out in outs[1:]:
        for a, b in zip(out, outs[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_torch_parity(reverse):
    """torch.nn.LSTM(proj_size=P): outputs, final states and every gradient, float64, with
    packed variable lengths."""
    torch = pytest.importorskip("torch")
    T, B, I, H, P = 6, 4, 3, 10, 4
    p = problem(T, B, I, H, P, np.float64, seed=5)
    lengths = [6, 3, 5, 1]
    m = torch.nn.LSTM(I, H, proj_size=P, bidirectional=reverse).double()
    sfx = "_reverse" if reverse else ""
    with torch.no_grad():
        for ours, theirs in (("w_ih", "weight_ih_l0"), ("w_hh", "weight_hh_l0"),
                             ("w_hr", "weight_hr_l0"), ("b_ih", "bias_ih_l0"),
                             ("b_hh", "bias_hh_l0")):
            getattr(m, theirs + sfx).copy_(torch.from_numpy(p[ours]))
    x = torch.from_numpy(p["x"]).requires_grad_()
    D = 2 if reverse else 1
    h0 = torch.from_numpy(np.repeat(p["h0"][None], D, 0)).requires_grad_()
    c0 = torch.from_numpy(np.repeat(p["c0"][None], D, 0)).requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, (hT, cT) = m(packed, (h0, c0))
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    k = 1 if reverse else 0                       # the direction compared
    y_dir = y[..., k * P:(k + 1) * P]
    loss = (y_dir * torch.from_numpy(p["dy"])).sum() + (hT[k] * torch.from_numpy(p["dhT"])).sum() \
        + (cT[k] * torch.from_numpy(p["dcT"])).sum()
    loss.backward()
    ours = run(F, p, lengths, reverse)
    np.testing.assert_allclose(ours[0], y_dir.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours[1], hT[k].detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ours[2], cT[k].detach().numpy(), rtol=1e-12, atol=1e-13)
    g = F.projection_lstm_backward(p["dy"], p["dhT"], p["dcT"], ours[3])
    np.testing.assert_allclose(g.dx, x.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(g.dh0, h0.grad[k].numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(g.dc0, c0.grad[k].numpy(), rtol=1e-11, atol=1e-12)
    for name, theirs in (("dw_ih", "weight_ih_l0"), ("dw_hh", "weight_hh_l0"),
                         ("dw_hr", "weight_hr_l0"), ("db_ih", "bias_ih_l0"),
                         ("db_hh", "bias_hh_l0")):
        np.testing.assert_allclose(getattr(g, name), getattr(m, theirs + sfx).grad.numpy(),
                                   rtol=1e-11, atol=1e-12, err_msg=name)


def test_bad_input():
    p = problem(3, 2, 3, 6, 4, np.float64)
    args = [p[k] for k in ARGS]
    with pytest.raises(ValueError, match=r"w_hh must have shape \(4\*H, P\) = \(24, 4\)"):
        F.projection_lstm_forward(*args[:4], np.zeros((24, 6)), *args[5:])
    with pytest.raises(ValueError, match=r"P < H"):
        F.projection_lstm_forward(*args[:7], np.zeros((6, 6)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, P\) = \(2, 4\)"):
        F.projection_lstm_forward(args[0], np.zeros((2, 6)), *args[2:])
    cache = F.projection_lstm_forward(*args)[3]
    with pytest.raises(TypeError, match="cache comes from projection_lstm_forward"):
        F.lstm_backward(None, None, None, cache)


# ---- layers.LSTM(proj_size=P): PyTorch's names, state dicts and numbers --------------------

@pytest.mark.parametrize("num_layers,bidir,with_lengths,batch_first,dtype", [
    (1, False, True, False, np.float64), (2, True, True, False, np.float64),
    (3, True, False, True, np.float64), (2, False, True, True, np.float32)])
def test_layer_torch_parity(num_layers, bidir, with_lengths, batch_first, dtype):
    torch = pytest.importorskip("torch")
    from fastrnn import layers as L
    T, B, I, H, P = 6, 5, 4, 5, 3
    rng = np.random.default_rng(num_layers * 10 + bidir)
    torch.manual_seed(num_layers)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tl = torch.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidir,
                       batch_first=batch_first, proj_size=P).to(tdt)
    layer = L.LSTM(I, H, num_layers=num_layers, bidirectional=bidir, batch_first=batch_first,
                   proj_size=P, dtype=dtype)
    assert list(layer.parameters()) == [k for k, _ in tl.named_parameters()]
    layer.load_state_dict(tl.state_dict())
    for k, v in tl.state_dict().items():                  # bit for bit, both ways
        assert np.array_equal(layer.parameters()[k], v.numpy())
    D = 2 if bidir else 1
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    if with_lengths:
        lengths[0] = T
    h0 = rng.standard_normal((num_layers * D, B, P)).astype(dtype)
    c0 = rng.standard_normal((num_layers * D, B, H)).astype(dtype)
    y, (hT, cT) = layer.forward(x, state=(h0, c0), lengths=lengths)
    assert y.shape[-1] == D * P and hT.shape == h0.shape and cT.shape == c0.shape
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(a, requires_grad=True) for a in (h0, c0)]
    inp = xt if not with_lengths else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    yt, (ht, ct) = tl(inp, tuple(st))
    if with_lengths:
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, batch_first=batch_first,
                                                       total_length=T)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(hT, ht.detach().numpy(), **tol)
    np.testing.assert_allclose(cT, ct.detach().numpy(), **tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh = rng.standard_normal(hT.shape).astype(dtype)
    dc = rng.standard_normal(cT.shape).astype(dtype)
    layer.zero_grad()
    dx = layer.backward(dy, dstate=(dh, dc))
    ((yt * torch.tensor(dy)).sum() + (ht * torch.tensor(dh)).sum()
     + (ct * torch.tensor(dc)).sum()).backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    for ours, theirs in zip(layer.state_grad, st):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **tol)
    for name, p in tl.named_parameters():
        np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), err_msg=name, **tol)
    tl2 = torch.nn.LSTM(I, H, num_layers=num_layers, bidirectional=bidir,
                        batch_first=batch_first, proj_size=P).to(tdt)
    tl2.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})


def test_layer_step_stateful_save_load_and_errors(tmp_path):
    import fastrnn
    from fastrnn import layers as L
    layer = L.LSTM(3, 8, num_layers=2, proj_size=4, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((6, 2, 3))
    y, _ = layer.forward(x, training=False)
    layer.eval()
    state = None
    for t in range(6):
        y_t, state = layer.step(x[t], state)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-12, atol=1e-13)
    y_1, _ = layer.step(x[0, 0])                             # a single sample
    np.testing.assert_allclose(y_1, y[0, 0], rtol=1e-12, atol=1e-13)
    s = L.LSTM(3, 8, num_layers=2, proj_size=4, dtype=np.float64, seed=0, stateful=True)
    a, _ = s.forward(x[:2], training=False)
    b, _ = s.forward(x[2:], training=False)
    np.testing.assert_allclose(np.concatenate([a, b]), y, rtol=1e-12, atol=1e-13)
    model = fastrnn.Sequential([L.LSTM(3, 8, proj_size=4, seed=0), L.LastStep(),
                                L.Dense(4, 2, seed=0)])
    fastrnn.save(model, tmp_path / "p.npz")
    again = fastrnn.load(tmp_path / "p.npz")
    assert again.layers[0].proj_size == 4
    xs = np.random.default_rng(2).standard_normal((5, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(xs), model.predict(xs))
    with pytest.raises(ValueError, match=r"proj_size must be smaller than hidden_size \(8\)"):
        L.LSTM(3, 8, proj_size=8)
    with pytest.raises(ValueError, match="proj_size must be an integer >= 0"):
        L.LSTM(3, 8, proj_size=-1)
    with pytest.raises(ValueError, match="Keras's LSTM has no weight_hr"):
        L.LSTM(3, 8, proj_size=4).to_keras_weights()


def test_layer_finite_differences():
    from fastrnn import layers as L
    from gradcheck import check_layer
    rng = np.random.default_rng(0)
    layer = L.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, dtype=np.float64,
                   seed=1)
    x = rng.standard_normal((4, 3, 3))

    def run(layer, x):
        return layer.forward(x, lengths=[4, 2, 3])[0]

    check_layer(layer, x, run, rng)
