"""fastrnn.from_torch: torch.nn modules -> the same model in fastrnn, with the same outputs
and gradients (float64, torch autograd), or a clear refusal."""
import numpy as np
import pytest

import fastrnn

torch = pytest.importorskip("torch")
nn = torch.nn


def _run_torch(module, x):
    """The torch model's output; a recurrent module inside nn.Sequential passes its output
    sequence on (what a user's wrapper does)."""
    if isinstance(module, nn.Sequential):
        for child in module:
            x = child(x)
            if isinstance(x, tuple):
                x = x[0]
        return x
    return module(x)[0]


RECURRENT = [
    ("lstm", lambda: nn.LSTM(3, 5)),
    ("lstm-2-bi-bf", lambda: nn.LSTM(3, 5, num_layers=2, bidirectional=True,
                                     batch_first=True)),
    ("lstm-proj", lambda: nn.LSTM(3, 6, num_layers=2, proj_size=2)),
    ("gru-bi", lambda: nn.GRU(3, 4, bidirectional=True)),
    ("gru-nobias", lambda: nn.GRU(3, 4, num_layers=2, bias=False)),
    ("rnn-relu", lambda: nn.RNN(3, 4, nonlinearity="relu", num_layers=2)),
    ("rnn-tanh-bf", lambda: nn.RNN(3, 4, batch_first=True)),
]


@pytest.mark.parametrize("name,make", RECURRENT, ids=[n for n, _ in RECURRENT])
def test_recurrent_modules_give_the_same_outputs_states_and_gradients(name, make):
    torch.manual_seed(0)
    module = make().double()
    layer = fastrnn.from_torch(module)
    assert type(layer).__name__ == type(module).__name__
    for attr in ("num_layers", "bidirectional", "batch_first", "bias"):
        assert getattr(layer, attr) == getattr(module, attr)
    rng = np.random.default_rng(1)
    shape = (2, 7, 3) if module.batch_first else (7, 2, 3)
    x = rng.standard_normal(shape)
    xt = torch.tensor(x, requires_grad=True)
    yt, st = module(xt)
    y, state = layer.forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    ts = st if isinstance(st, tuple) else (st,)
    fs = state if isinstance(state, tuple) else (state,)
    for a, b in zip(fs, ts):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-12, atol=1e-13)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx = layer.backward(dy)
    dx = dx[0] if isinstance(dx, tuple) else dx
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-11)
    grads = layer.grads
    for k, p in module.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-10, atol=1e-11,
                                   err_msg=k)


def test_a_sequential_model_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Embedding(11, 4, padding_idx=0),
                           nn.LSTM(4, 6, batch_first=True, bidirectional=True),
                           nn.Dropout(0.3), nn.Linear(12, 5), nn.Tanh(), nn.Identity(),
                           nn.Linear(5, 3), nn.Softmax(dim=-1)).double().eval()
    model = fastrnn.from_torch(module)
    assert not model.training
    ids = np.random.default_rng(2).integers(0, 11, (3, 8))
    want = _run_torch(module, torch.tensor(ids)).detach().numpy()
    got = model.forward(ids)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # gradients, in training mode without dropout
    module[2].p = 0.0
    module.train()
    model = fastrnn.from_torch(module)
    out = _run_torch(module, torch.tensor(ids))
    dy = np.random.default_rng(3).standard_normal(tuple(out.shape))
    out.backward(torch.tensor(dy))
    model.forward(ids)
    model.backward(dy)
    # the same parameters in the same order; names are the chain's indices (nn.Identity
    # is dropped, so the last Linear is torch's "6." and fastrnn's "5.")
    pairs = list(zip(model.grads.items(), module.named_parameters()))
    assert len(pairs) == len(list(module.parameters()))
    for (k, g), (tk, p) in pairs:
        assert k.split(".", 1)[1] == tk.split(".", 1)[1]
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-11, err_msg=tk)


def test_float32_modules_stay_float32():
    layer = fastrnn.from_torch(nn.GRU(2, 3))
    assert layer.dtype == np.float32


def test_refusals_name_the_module():
    with pytest.raises(TypeError, match=r"Sequential\.1 is a torch\.nn\.Conv1d"):
        fastrnn.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Conv1d(2, 2, 1)))
    with pytest.raises(TypeError, match="Softmax"):
        fastrnn.from_torch(nn.Softmax(dim=0))
    with pytest.raises(TypeError, match="max_norm"):
        fastrnn.from_torch(nn.Embedding(4, 2, max_norm=1.0))
    with pytest.raises(TypeError, match="float16"):
        fastrnn.from_torch(nn.Linear(2, 2).half())

    class Mine(nn.Module):
        def forward(self, x):
            return x
    with pytest.raises(TypeError, match="not one of torch.nn's modules"):
        fastrnn.from_torch(Mine())


def test_the_copy_is_independent():
    module = nn.Linear(2, 2).double()
    model = fastrnn.from_torch(module)
    with torch.no_grad():
        module.weight.zero_()
    assert np.any(model.parameters()["0.weight"] != 0)
