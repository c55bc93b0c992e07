"""Recurrent layers: torch parity (multi-layer, bidirectional, packed lengths), finite-difference
gradients of every option, stateful chunks, streaming steps, masks, dropout, initializers."""
import zlib

import numpy as np
import pytest

import fastrnn
from fastrnn import layers as L
from fastrnn.layers import lengths_from_mask, sequence_mask
from gradcheck import check_layer

CELLS = {"rnn": L.RNN, "rnn_relu": L.RNN, "lstm": L.LSTM, "gru": L.GRU}


def make(cell, I, H, **kw):
    if cell == "rnn_relu":
        kw["nonlinearity"] = "relu"
    return CELLS[cell](I, H, **kw)


def n_states(layer):
    return 2 if isinstance(layer, L.LSTM) else 1


def as_parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def from_parts(layer, parts):
    return tuple(parts) if n_states(layer) == 2 else parts[0]


# ----------------------------------------------------------------------------------------
# torch parity

PARITY = [
    # cell, num_layers, bidirectional, lengths, batch_first, with_state, dtype
    ("lstm", 1, False, False, False, False, np.float64),
    ("lstm", 2, True, True, False, True, np.float64),
    ("lstm", 3, True, True, True, True, np.float64),
    ("lstm", 2, False, True, True, False, np.float32),
    ("gru", 1, False, True, False, True, np.float64),
    ("gru", 2, True, True, False, True, np.float64),
    ("gru", 3, True, False, True, True, np.float64),
    ("gru", 2, True, True, True, False, np.float32),
    ("rnn", 2, True, True, False, True, np.float64),
    ("rnn", 3, False, True, True, True, np.float64),
    ("rnn_relu", 2, True, True, False, True, np.float64),
    ("rnn", 2, True, True, False, False, np.float32),
]


@pytest.mark.parametrize("cell,num_layers,bidir,with_lengths,batch_first,with_state,dtype",
                         PARITY)
def test_torch_parity(cell, num_layers, bidir, with_lengths, batch_first, with_state, dtype):
    torch = pytest.importorskip("torch")
    T, B, I, H = 6, 5, 4, 3
    rng = np.random.default_rng(zlib.crc32(repr((cell, num_layers, bidir, with_lengths,
                                                  batch_first)).encode()))
    tcls = {"rnn": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
            "gru": torch.nn.GRU}[cell]
    kw = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
    torch.manual_seed(int(rng.integers(1 << 30)))
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    tl = tcls(I, H, num_layers=num_layers, bidirectional=bidir, batch_first=batch_first,
              **kw).to(tdt)
    layer = make(cell, I, H, num_layers=num_layers, bidirectional=bidir,
                 batch_first=batch_first, dtype=dtype)
    layer.load_state_dict(tl.state_dict())
    assert list(layer.parameters()) == [k for k, _ in tl.named_parameters()]

    D = 2 if bidir else 1
    shape = (B, T, I) if batch_first else (T, B, I)
    x = rng.standard_normal(shape).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    if with_lengths:
        lengths[0] = T
    parts = [rng.standard_normal((num_layers * D, B, H)).astype(dtype)
             for _ in range(n_states(layer))] if with_state else None

    y, state = layer.forward(x, state=None if parts is None else from_parts(layer, parts),
                             lengths=lengths)
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(p, requires_grad=True) for p in parts] if parts else None
    inp = xt
    if with_lengths:
        inp = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                      batch_first=batch_first,
                                                      enforce_sorted=False)
    t_state = None if st is None else (tuple(st) if len(st) == 2 else st[0])
    yt, t_final = tl(inp, t_state)
    if with_lengths:
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, batch_first=batch_first,
                                                       total_length=T)
    t_final = list(t_final) if isinstance(t_final, tuple) else [t_final]
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    for ours, theirs in zip(as_parts(state), t_final):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **tol)

    dy = rng.standard_normal(y.shape).astype(dtype)
    dfin = [rng.standard_normal(p.shape).astype(dtype) for p in as_parts(state)]
    layer.zero_grad()
    dx = layer.backward(dy, dstate=from_parts(layer, dfin))
    loss = (yt * torch.tensor(dy)).sum() + sum((f * torch.tensor(d)).sum()
                                               for f, d in zip(t_final, dfin))
    loss.backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    if st:
        for ours, theirs in zip(as_parts(layer.state_grad), st):
            np.testing.assert_allclose(ours, theirs.grad.numpy(), **tol)
    for name, p in tl.named_parameters():
        np.testing.assert_allclose(layer.grads[name], p.grad.numpy(), err_msg=name, **tol)


def test_state_dict_loads_torch_tensors_bit_for_bit():
    torch = pytest.importorskip("torch")
    tl = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    layer = L.LSTM(5, 7, num_layers=2, bidirectional=True)
    layer.load_state_dict(tl.state_dict())
    for k, v in tl.state_dict().items():
        assert np.array_equal(layer.parameters()[k], v.numpy())
    # and back: our state dict loads into torch
    tl2 = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    tl2.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    for k, v in tl2.state_dict().items():
        assert np.array_equal(layer.parameters()[k], v.numpy())


# ----------------------------------------------------------------------------------------
# finite differences (float64), every option

def _run_factory(lengths=None, state=None, dstate_weights=None, seed=None):
    def run(layer, x):
        if seed is not None:
            layer._rng = np.random.default_rng(seed)      # same dropout mask every call
        out = layer.forward(x, state=state, lengths=lengths)
        y = out[0] if isinstance(out, tuple) else out
        return y
    return run


FD_CASES = [
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, bidirectional=True, merge_mode="sum"),
    dict(num_layers=1, bidirectional=True, merge_mode="mul"),
    dict(num_layers=2, bidirectional=True, merge_mode="ave", batch_first=True),
    dict(num_layers=2, bidirectional=True, return_sequences=False),
    dict(num_layers=2, go_backwards=True),
    dict(num_layers=1, go_backwards=True, return_sequences=False),
    dict(num_layers=3, dropout=0.3),
    dict(num_layers=1, bias=False),
    dict(num_layers=2, zero_output_for_mask=False, batch_first=True),
    dict(num_layers=1, go_backwards=True, go_backwards_order="full"),
    dict(num_layers=1, go_backwards=True, zero_output_for_mask=False),
]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "gru_before", "lstm_peephole"])
@pytest.mark.parametrize("case", range(len(FD_CASES)))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_layer_gradients_finite_differences(cell, case, with_lengths):
    kw = dict(FD_CASES[case])
    T, B, I, H = 5, 3, 3, 4
    rng = np.random.default_rng(case * 7 + with_lengths)
    if cell == "gru_before":
        layer = L.GRU(I, H, reset_after=False, dtype=np.float64, seed=1, **kw)
    elif cell == "lstm_peephole":
        layer = L.LSTM(I, H, peephole=True, dtype=np.float64, seed=1, **kw)
        for name, p in layer.parameters().items():        # they start at zero
            if name.startswith("weight_peep"):
                p[...] = rng.standard_normal(p.shape) * 0.7
    else:
        layer = make(cell, I, H, dtype=np.float64, seed=1, **kw)
    x = rng.standard_normal((B, T, I) if kw.get("batch_first") else (T, B, I))
    lengths = np.array([5, 2, 4]) if with_lengths else None
    check_layer(layer, x, _run_factory(lengths, seed=3), rng)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_initial_state_gradient_finite_differences(cell):
    T, B, I, H = 4, 2, 3, 3
    rng = np.random.default_rng(5)
    layer = make(cell, I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=2)
    parts = [rng.standard_normal((4, B, H)) for _ in range(n_states(layer))]
    lengths = np.array([4, 2])
    R = rng.standard_normal((T, B, 2 * H))
    Rs = [rng.standard_normal((4, B, H)) for _ in parts]

    def loss():
        y, st = layer.forward(x, state=from_parts(layer, parts), lengths=lengths)
        return float((y * R).sum() + sum((s * r).sum() for s, r in zip(as_parts(st), Rs)))

    x = rng.standard_normal((T, B, I))
    loss()
    layer.backward(R, dstate=from_parts(layer, Rs))
    sg = [g.copy() for g in as_parts(layer.state_grad)]
    from gradcheck import assert_close_fd
    for i, p in enumerate(parts):
        assert_close_fd(sg[i], p, loss, rng, f"state[{i}]")


# ----------------------------------------------------------------------------------------
# semantics

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidir", [False, True])
def test_stateful_three_chunks_equal_one_long_forward(cell, bidir):
    T, B, I, H = 12, 3, 4, 5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    full = make(cell, I, H, num_layers=2, dtype=np.float64, seed=4)
    chunked = make(cell, I, H, num_layers=2, dtype=np.float64, seed=4, stateful=True)
    y_full, s_full = full.forward(x)
    ys = [chunked.forward(x[i:i + 4])[0] for i in range(0, T, 4)]
    np.testing.assert_allclose(np.concatenate(ys), y_full, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(as_parts(chunked._public_state(chunked._states))[0],
                               as_parts(s_full)[0], rtol=1e-12, atol=1e-13)
    chunked.reset_states()
    np.testing.assert_allclose(chunked.forward(x[:4])[0], y_full[:4], rtol=1e-12, atol=1e-13)


def test_stateful_gradient_stops_at_the_chunk_boundary():
    T, B, I, H = 4, 2, 3, 3
    rng = np.random.default_rng(1)
    layer = L.LSTM(I, H, dtype=np.float64, stateful=True, seed=0)
    layer.forward(rng.standard_normal((T, B, I)))
    x2 = rng.standard_normal((T, B, I))
    carried = [s.copy() for s in layer._states]
    y, _ = layer.forward(x2)
    layer.zero_grad()
    dx = layer.backward(np.ones_like(y))
    # the same as a non-stateful call with the carried state as a constant initial state
    plain = L.LSTM(I, H, dtype=np.float64, seed=0)
    y2, _ = plain.forward(x2, state=tuple(carried))
    dx2 = plain.backward(np.ones_like(y2))
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dx, dx2)
    for k in plain.grads:
        np.testing.assert_array_equal(layer.grads[k], plain.grads[k])


def test_stateful_batch_size_change_is_refused():
    layer = L.GRU(3, 4, stateful=True)
    layer.forward(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(ValueError, match="reset_states"):
        layer.forward(np.zeros((2, 4, 3), np.float32))
    layer.reset_states()
    layer.forward(np.zeros((2, 4, 3), np.float32))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_step_matches_forward(cell):
    T, B, I, H = 6, 2, 3, 4
    rng = np.random.default_rng(2)
    layer = make(cell, I, H, num_layers=2, dtype=np.float64, seed=1).eval()
    x = rng.standard_normal((T, B, I))
    y, final = layer.forward(x)
    state, outs = None, []
    for t in range(T):
        y_t, state = layer.step(x[t], state)
        outs.append(y_t)
    np.testing.assert_allclose(np.stack(outs), y, rtol=1e-12, atol=1e-13)
    for a, b in zip(as_parts(state), as_parts(final)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    # a single (unbatched) sequence
    state = None
    for t in range(T):
        y_t, state = layer.step(x[t, 1], state)
    assert y_t.shape == (H,)
    np.testing.assert_allclose(y_t, y[-1, 1], rtol=1e-12, atol=1e-13)


def test_step_sees_new_weights_after_load_and_in_training_mode():
    layer = L.LSTM(3, 4, seed=0).eval()
    x = np.ones((1, 3), np.float32)
    before = layer.step(x)[0]
    other = L.LSTM(3, 4, seed=1)
    layer.load_state_dict(other.state_dict())
    np.testing.assert_allclose(layer.step(x)[0], other.eval().step(x)[0])
    assert not np.allclose(before, layer.step(x)[0])
    layer.train()
    layer.parameters()["bias_ih_l0"][:] += 1.0          # by hand, in training mode
    assert not np.allclose(layer.step(x)[0], other.step(x)[0])


def test_step_refuses_bidirectional():
    with pytest.raises(ValueError, match="bidirectional"):
        L.GRU(3, 4, bidirectional=True).step(np.zeros(3, np.float32))


@pytest.mark.parametrize("batch_first", [False, True])
def test_mask_equals_lengths(batch_first):
    T, B, I, H = 5, 3, 2, 4
    rng = np.random.default_rng(0)
    layer = L.LSTM(I, H, bidirectional=True, batch_first=batch_first, seed=0)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    lengths = np.array([5, 1, 3])
    mask = sequence_mask(lengths, T, batch_first=batch_first)
    y1, s1 = layer.forward(x, lengths=lengths)
    y2, s2 = layer.forward(x, mask=mask)
    y3, s3 = layer.forward(x, mask=mask.T.astype(np.float32))       # other orientation
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, y3)
    np.testing.assert_array_equal(s1[0], s2[0])


def test_mask_that_is_not_a_prefix_is_refused():
    mask = np.array([[1, 1], [0, 1], [1, 0]], bool)        # (T=3, B=2); row 0 has a hole
    with pytest.raises(ValueError, match="prefix"):
        lengths_from_mask(mask, 3, 2)
    with pytest.raises(ValueError, match="no valid step"):
        lengths_from_mask(np.array([[1, 0], [1, 0]]), 2, 2)
    with pytest.raises(ValueError, match="lengths or mask"):
        L.RNN(2, 2).forward(np.zeros((3, 2, 2)), lengths=[3, 3], mask=np.ones((3, 2)))


def test_padded_outputs_are_zero_and_return_sequences_false_gives_last_valid():
    T, B, I, H = 6, 3, 2, 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([6, 2, 4])
    seq = L.GRU(I, H, dtype=np.float64, seed=0)
    last = L.GRU(I, H, dtype=np.float64, seed=0, return_sequences=False, return_state=False)
    y, h = seq.forward(x, lengths=lengths)
    for b, n in enumerate(lengths):
        assert np.all(y[n:, b] == 0)
    np.testing.assert_array_equal(last.forward(x, lengths=lengths), y[lengths - 1, np.arange(B)])
    np.testing.assert_array_equal(h[0], y[lengths - 1, np.arange(B)])


def test_go_backwards_is_reverse_in_processing_order():
    T, B, I, H = 5, 2, 2, 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([5, 3])
    back = L.RNN(I, H, dtype=np.float64, seed=0, go_backwards=True)
    y, h = back.forward(x, lengths=lengths)
    # running forward over each row's reversed prefix gives the same sequence
    fwd = L.RNN(I, H, dtype=np.float64, seed=0)
    xr = x.copy()
    for b, n in enumerate(lengths):
        xr[:n, b] = x[:n, b][::-1]
    y2, h2 = fwd.forward(xr, lengths=lengths)
    np.testing.assert_allclose(y, y2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, h2, rtol=1e-12, atol=1e-14)


def test_keras_padded_step_semantics():
    """zero_output_for_mask=False repeats a row's last output over its padding;
    go_backwards_order='full' reverses the whole padded axis (padding first)."""
    T, B, I, H = 6, 3, 2, 3
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([6, 2, 4])
    base = L.LSTM(I, H, dtype=np.float64, seed=0)
    y, _ = base.forward(x, lengths=lengths)
    rep = L.LSTM(I, H, dtype=np.float64, seed=0, zero_output_for_mask=False)
    y_rep, _ = rep.forward(x, lengths=lengths)
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(y_rep[:n, b], y[:n, b])
        np.testing.assert_array_equal(y_rep[n:, b], np.broadcast_to(y[n - 1, b], (T - n, H)))
    back = L.LSTM(I, H, dtype=np.float64, seed=0, go_backwards=True)
    full = L.LSTM(I, H, dtype=np.float64, seed=0, go_backwards=True,
                  go_backwards_order="full", zero_output_for_mask=False)
    y_back, h_back = back.forward(x, lengths=lengths)
    y_full, h_full = full.forward(x, lengths=lengths)
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(y_full[T - n:, b], y_back[:n, b])
        assert np.all(y_full[:T - n, b] == 0)
    np.testing.assert_array_equal(h_full[0], h_back[0])
    # without lengths both orders are the plain reversal
    np.testing.assert_array_equal(full.forward(x)[0], back.forward(x)[0])


@pytest.mark.parametrize("kw,what", [
    (dict(bidirectional=True, zero_output_for_mask=False), "one-directional"),
    (dict(go_backwards_order="full"), "go_backwards=True"),
    (dict(go_backwards=True, go_backwards_order="reversed"), "'valid' or 'full'"),
])
def test_keras_semantics_options_are_checked(kw, what):
    with pytest.raises(ValueError, match=what):
        L.GRU(2, 3, **kw)


def test_bidirectional_merge_modes():
    T, B, I, H = 4, 2, 3, 5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I))
    ref = L.LSTM(I, H, bidirectional=True, dtype=np.float64, seed=0)
    y, _ = ref.forward(x)
    f, b = y[..., :H], y[..., H:]
    expect = {"sum": f + b, "mul": f * b, "ave": (f + b) / 2}
    for mode, want in expect.items():
        layer = L.LSTM(I, H, bidirectional=True, dtype=np.float64, seed=0, merge_mode=mode)
        assert layer.output_size == H
        np.testing.assert_allclose(layer.forward(x)[0], want, rtol=1e-12)


def test_dropout_only_in_training_and_seeded():
    T, B, I, H = 5, 4, 3, 6
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    a = L.GRU(I, H, num_layers=2, dropout=0.5, seed=7)
    b = L.GRU(I, H, num_layers=2, dropout=0.5, seed=7)
    nodrop = L.GRU(I, H, num_layers=2, seed=7)
    ya, yb = a.forward(x)[0], b.forward(x)[0]
    np.testing.assert_array_equal(ya, yb)                         # same seed, same masks
    assert not np.allclose(ya, nodrop.forward(x)[0])
    assert not np.allclose(ya, a.forward(x)[0])                   # fresh mask per call
    a.eval()
    np.testing.assert_array_equal(a.forward(x)[0], nodrop.eval().forward(x)[0])
    assert a._cache is None                                       # eval keeps nothing


def test_eval_mode_backward_is_refused_but_training_override_works():
    layer = L.LSTM(2, 3).eval()
    x = np.zeros((3, 1, 2), np.float32)
    y, _ = layer.forward(x)
    with pytest.raises(RuntimeError, match="training mode"):
        layer.backward(y)
    y, _ = layer.forward(x, training=True)
    layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match="training mode"):
        layer.backward(y)                                         # one backward per forward


def test_gradients_accumulate_until_zero_grad():
    layer = L.RNN(2, 3, dtype=np.float64, seed=0)
    x = np.ones((3, 2, 2))
    layer.forward(x)
    layer.backward(np.ones((3, 2, 3)))
    once = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(np.ones((3, 2, 3)))
    for k, v in layer.grads.items():
        np.testing.assert_allclose(v, 2 * once[k])
    layer.zero_grad()
    assert all(not v.any() for v in layer.grads.values())


def test_float32_layer_casts_input_and_keeps_dtype():
    layer = L.GRU(3, 4, seed=0)
    y, h = layer.forward(np.ones((2, 1, 3)))               # float64 input
    assert y.dtype == np.float32 and h.dtype == np.float32
    dx = layer.backward(np.ones((2, 1, 4)))
    assert dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())


def test_backward_with_only_state_gradient():
    layer = L.LSTM(2, 3, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    y, (h, c) = layer.forward(x)
    dx = layer.backward(None, dstate=(np.ones_like(h), None))
    assert dx.shape == x.shape and np.abs(dx).sum() > 0


# ----------------------------------------------------------------------------------------
# initializers

def test_default_init_is_pytorch_uniform():
    layer = L.LSTM(10, 16, num_layers=2, seed=0)
    bound = 1 / np.sqrt(16)
    for k, v in layer.parameters().items():
        assert np.abs(v).max() <= bound + 1e-7, k
        assert np.abs(v).max() > 0.8 * bound, k


def test_seeded_init_is_reproducible():
    a = L.GRU(4, 5, seed=3).state_dict()
    b = L.GRU(4, 5, seed=np.random.default_rng(3)).state_dict()
    c = L.GRU(4, 5, seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_keras_style_initializers():
    H = 8
    layer = L.LSTM(5, H, kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                   bias_initializer="zeros", unit_forget_bias=True, dtype=np.float64, seed=0)
    w_hh = layer.parameters()["weight_hh_l0"]
    for g in range(4):
        block = w_hh[g * H:(g + 1) * H]
        np.testing.assert_allclose(block @ block.T, np.eye(H), atol=1e-12)
    b_ih, b_hh = layer.parameters()["bias_ih_l0"], layer.parameters()["bias_hh_l0"]
    np.testing.assert_array_equal((b_ih + b_hh)[H:2 * H], 1.0)
    np.testing.assert_array_equal(np.delete(b_ih + b_hh, np.s_[H:2 * H]), 0.0)
    limit = np.sqrt(6 / (5 + 4 * H))
    assert np.abs(layer.parameters()["weight_ih_l0"]).max() <= limit


def test_identity_recurrent_init_for_irnn():
    layer = L.RNN(3, 6, nonlinearity="relu", recurrent_initializer="identity",
                  bias_initializer="zeros", dtype=np.float64)
    np.testing.assert_array_equal(layer.parameters()["weight_hh_l0"], np.eye(6))


@pytest.mark.parametrize("name", sorted(fastrnn.init.NAMES))
def test_every_named_initializer_runs(name):
    layer = L.GRU(3, 4, kernel_initializer=name, recurrent_initializer=name,
                  bias_initializer=name if name not in ("orthogonal", "identity") else "zeros",
                  seed=0)
    assert all(np.all(np.isfinite(v)) for v in layer.parameters().values())


def test_he_and_glorot_normal_scales():
    rng = np.random.default_rng(0)
    w = fastrnn.init.he_normal((400, 300), rng, np.float64)
    assert abs(w.std() - np.sqrt(2 / 300)) < 0.01 * np.sqrt(2 / 300) * 5
    w = fastrnn.init.glorot_normal((400, 300), rng, np.float64)
    assert abs(w.std() - np.sqrt(2 / 700)) < 0.05 * np.sqrt(2 / 700)
