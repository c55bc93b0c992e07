"""Dense, Embedding, Dropout, activations, LastStep, Pool and the losses: finite differences,
NumPy / torch references, semantics."""
import numpy as np
import pytest

import fastrnn
from fastrnn import layers as L
from fastrnn import losses
from gradcheck import assert_close_fd, check_layer


def run_plain(layer, x):
    return layer.forward(x)


# ----------------------------------------------------------------------------------------
# Dense

@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4), (2, 3, 2, 4), (4,)])
@pytest.mark.parametrize("activation", [None, "tanh", "relu", "sigmoid", "softmax"])
def test_dense_gradients(shape, activation):
    rng = np.random.default_rng(len(shape))
    layer = L.Dense(4, 3, activation=activation, dtype=np.float64, seed=0)
    x = rng.standard_normal(shape)
    if activation == "relu":
        x += np.sign(x) * 0.1                     # keep away from the kink
    check_layer(layer, x, run_plain, rng)


def test_dense_matches_torch_linear():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4).double()
    layer = L.Dense(6, 4, dtype=np.float64)
    layer.load_state_dict(lin.state_dict())
    x = np.random.default_rng(0).standard_normal((3, 5, 6))
    np.testing.assert_allclose(layer.forward(x), lin(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-14)


def test_dense_no_bias_and_default_init():
    layer = L.Dense(16, 8, bias=False, seed=0)
    assert list(layer.parameters()) == ["weight"]
    assert np.abs(layer.parameters()["weight"]).max() <= 1 / 4


# ----------------------------------------------------------------------------------------
# Embedding

def test_embedding_lookup_and_gradient_with_repeats_and_padding():
    layer = L.Embedding(6, 3, padding_idx=0, dtype=np.float64, seed=0)
    w = layer.parameters()["weight"]
    assert np.all(w[0] == 0)
    ids = np.array([[1, 2, 1], [0, 5, 1]])
    y = layer.forward(ids)
    np.testing.assert_array_equal(y, w[ids])
    dy = np.random.default_rng(0).standard_normal(y.shape)
    assert layer.backward(dy) is None
    g = layer.grads["weight"]
    np.testing.assert_allclose(g[1], dy[0, 0] + dy[0, 2] + dy[1, 2])
    np.testing.assert_allclose(g[5], dy[1, 1])
    assert np.all(g[0] == 0) and np.all(g[3] == 0)


def test_embedding_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 4, padding_idx=2).double()
    layer = L.Embedding(10, 4, padding_idx=2, dtype=np.float64)
    layer.load_state_dict(emb.state_dict())
    ids = np.random.default_rng(0).integers(0, 10, (5, 3))
    out = emb(torch.tensor(ids))
    np.testing.assert_array_equal(layer.forward(ids), out.detach().numpy())
    dy = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(torch.tensor(dy))
    layer.backward(dy)
    np.testing.assert_allclose(layer.grads["weight"], emb.weight.grad.numpy(), rtol=1e-12,
                               atol=1e-14)


def test_embedding_refuses_bad_ids():
    layer = L.Embedding(4, 2)
    with pytest.raises(ValueError, match=r"ids must be in \[0, 4\)"):
        layer.forward(np.array([0, 4]))
    with pytest.raises(TypeError, match="ids must hold integers"):
        layer.forward(np.array([0.0, 1.0]))


# ----------------------------------------------------------------------------------------
# Dropout and activations

def test_dropout_train_eval_and_gradient():
    layer = L.Dropout(0.25, seed=0)
    x = np.ones((1000, 50))
    y = layer.forward(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, y)               # same mask and scale
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), x)
    assert np.array_equal(L.Dropout(0.5, seed=3).forward(x), L.Dropout(0.5, seed=3).forward(x))


@pytest.mark.parametrize("cls", [L.Tanh, L.ReLU, L.Sigmoid, L.Softmax])
def test_activation_gradients(cls):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5))
    x += np.sign(x) * 0.05
    check_layer(cls(), x, run_plain, rng)


def test_activations_are_stable_for_extreme_inputs():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = L.Sigmoid().forward(x)
        p = L.Softmax().forward(x)
    np.testing.assert_allclose(s, [0, 1 / (1 + np.exp(50)), 0.5, 1 / (1 + np.exp(-50)), 1])
    assert np.isclose(p.sum(), 1) and p[-1] == 1.0
    assert np.isnan(L.ReLU().forward(np.array([np.nan]))[0])


def test_softmax_axis():
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_allclose(L.Softmax(axis=0).forward(x).sum(axis=0), 1.0)


# ----------------------------------------------------------------------------------------
# LastStep and Pool

@pytest.mark.parametrize("batch_first", [False, True])
def test_last_step_picks_each_rows_last_valid_output(batch_first):
    T, B, H = 5, 3, 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H))
    lengths = np.array([5, 1, 3])
    layer = L.LastStep(batch_first=batch_first)
    xin = np.ascontiguousarray(x.transpose(1, 0, 2)) if batch_first else x
    y = layer.forward(xin, lengths=lengths)
    np.testing.assert_array_equal(y, x[lengths - 1, np.arange(B)])
    check_layer(layer, xin, lambda lay, v: lay.forward(v, lengths=lengths), rng)


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_pool_over_valid_steps(mode, batch_first):
    T, B, H = 6, 3, 4
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, H))
    lengths = np.array([6, 2, 4])
    layer = L.Pool(mode, batch_first=batch_first)
    xin = np.ascontiguousarray(x.transpose(1, 0, 2)) if batch_first else x
    y = layer.forward(xin, lengths=lengths)
    for b, n in enumerate(lengths):
        want = x[:n, b].mean(axis=0) if mode == "mean" else x[:n, b].max(axis=0)
        np.testing.assert_allclose(y[b], want, rtol=1e-12)
    check_layer(layer, xin, lambda lay, v: lay.forward(v, lengths=lengths), rng)


# ----------------------------------------------------------------------------------------
# losses

def _loss_fd(loss_obj, pred, target, mask=None, rng=None):
    rng = rng or np.random.default_rng(0)
    value = loss_obj.forward(pred, target, mask)
    grad = loss_obj.backward()
    assert_close_fd(grad, pred, lambda: loss_obj.forward(pred, target, mask), rng, "dpred")
    return value, grad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_integer_targets_fd_and_torch(reduction):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 5)) * 3
    target = rng.integers(0, 5, (4, 3))
    target[0, 1] = -100
    ce = losses.CrossEntropy(reduction=reduction)
    value, grad = _loss_fd(ce, logits, target)
    torch = pytest.importorskip("torch")
    lt = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(lt.reshape(-1, 5), torch.tensor(target).reshape(-1),
                                           reduction=reduction)
    tl.backward()
    assert np.isclose(value, tl.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_cross_entropy_probability_targets_and_label_smoothing_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 4))
    probs = rng.dirichlet(np.ones(4), 6)
    for kw, target in [({}, probs), ({"label_smoothing": 0.1}, rng.integers(0, 4, 6))]:
        ce = losses.CrossEntropy(**kw)
        value, grad = _loss_fd(ce, logits, target)
        lt = torch.tensor(logits, requires_grad=True)
        tl = torch.nn.functional.cross_entropy(lt, torch.tensor(target), **kw)
        tl.backward()
        assert np.isclose(value, tl.item(), rtol=1e-12)
        np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_cross_entropy_mask_for_padded_steps():
    rng = np.random.default_rng(2)
    T, B, C = 5, 3, 4
    logits = rng.standard_normal((T, B, C))
    target = rng.integers(0, C, (T, B))
    lengths = np.array([5, 2, 3])
    mask = L.sequence_mask(lengths, T)
    value, grad = _loss_fd(losses.CrossEntropy(), logits, target, mask)
    # same as the mean over the valid positions only
    valid = [(t, b) for b in range(B) for t in range(lengths[b])]
    per = [-(logits[t, b, target[t, b]] - np.log(np.exp(logits[t, b]).sum())) for t, b in valid]
    assert np.isclose(value, np.mean(per))
    assert np.all(grad[~mask] == 0)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v = losses.CrossEntropy().forward(logits, np.array([1]))
    assert np.isclose(v, 1e4)


def test_cross_entropy_all_ignored_is_zero():
    ce = losses.CrossEntropy()
    assert ce.forward(np.zeros((2, 3)), np.array([-100, -100])) == 0.0
    assert not ce.backward().any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_bce_vs_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    pred = rng.standard_normal((4, 3)) * 4
    for ours, theirs, target in [
            (losses.MSE(reduction), torch.nn.functional.mse_loss, rng.standard_normal((4, 3))),
            (losses.BCEWithLogits(reduction), torch.nn.functional.binary_cross_entropy_with_logits,
             rng.random((4, 3)))]:
        value = ours.forward(pred, target)
        upstream = 1.0 if reduction != "none" else rng.standard_normal((4, 3))
        grad = ours.backward(upstream)
        pt = torch.tensor(pred, requires_grad=True)
        tv = theirs(pt, torch.tensor(target), reduction=reduction)
        tv.backward(torch.tensor(upstream))
        np.testing.assert_allclose(value, tv.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_mse_and_bce_fd_with_masks():
    rng = np.random.default_rng(4)
    pred = rng.standard_normal((5, 3, 2))
    mask = L.sequence_mask(np.array([5, 1, 3]), 5)
    for loss_obj, target in [(losses.MSE(), rng.standard_normal((5, 3, 2))),
                             (losses.BCEWithLogits(), rng.random((5, 3, 2)))]:
        _loss_fd(loss_obj, pred, target, mask)
    # the mask's mean counts every element of the valid positions
    v = losses.MSE().forward(np.ones((2, 2, 3)), np.zeros((2, 2, 3)),
                             mask=np.array([[1, 0], [1, 0]]))
    assert v == 1.0


def test_losses_refuse_bad_input():
    with pytest.raises(ValueError, match="target must be integer class ids"):
        losses.CrossEntropy().forward(np.zeros((3, 4)), np.zeros(4, int))
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 4\)"):
        losses.CrossEntropy().forward(np.zeros((2, 4)), np.array([0, 4]))
    with pytest.raises(ValueError, match="target must have the shape of pred"):
        losses.MSE().forward(np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="mask must have the leading shape"):
        losses.MSE().forward(np.zeros((3, 2)), np.zeros((3, 2)), mask=np.ones(2))
    with pytest.raises(ValueError, match="reduction must be"):
        losses.MSE(reduction="avg")
    with pytest.raises(RuntimeError, match="forward"):
        losses.MSE().backward()
    with pytest.raises(ValueError, match="loss must be"):
        losses.get("hinge")
    assert isinstance(losses.get("cross_entropy"), losses.CrossEntropy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_cross_entropy_matches_the_probability_path(dtype, reduction, smoothing):
    """Integer targets take the compiled fused pass; one-hot probability targets the NumPy
    formula: same loss and gradient (ignore_index and a mask included)."""
    rng = np.random.default_rng(1)
    T, B, C = 5, 4, 37
    z = (3 * rng.standard_normal((T, B, C))).astype(dtype)
    t = rng.integers(0, C, (T, B))
    t[1, 2] = -100                                    # ignored
    mask = (rng.random((T, B)) > 0.3).astype(dtype)
    onehot = np.eye(C, dtype=dtype)[np.where(t < 0, 0, t)]
    onehot[t < 0] = 0
    fused, generic = (losses.CrossEntropy(reduction, label_smoothing=smoothing)
                      for _ in range(2))
    a = fused.forward(z, t, mask)
    # the probability path counts a zero row as weight 1: give it the mask's 0 instead
    mask2 = mask * (t >= 0)
    b = generic.forward(z, onehot, mask2)
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a, b, **tol)
    g = np.ones(z.shape[:-1], dtype) if reduction == "none" else 1.0
    np.testing.assert_allclose(fused.backward(g), generic.backward(g), **tol)


def test_fused_cross_entropy_never_reads_masked_rows_and_is_thread_invariant():
    from fastrnn.engine.threads import using
    rng = np.random.default_rng(2)
    z = rng.standard_normal((64, 500)).astype(np.float32)
    t = rng.integers(0, 500, 64)
    mask = np.ones(64, np.float32)
    mask[5] = 0
    z[5] = np.nan
    results = []
    for n in (1, 2):
        with using(n):
            ce = losses.CrossEntropy()
            results.append((ce.forward(z, t, mask), ce.backward()))
    assert np.isfinite(results[0][0]) and np.isfinite(results[0][1]).all()
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert not results[0][1][5].any()


# ---- Masking and Embedding(mask_zero): lengths from the data ----------------------------

def test_masking_sets_the_lengths_of_the_chain_and_zeroes_padding():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2))
    lengths = np.array([5, 2, 4])
    for b, n in enumerate(lengths):
        x[b, n:] = -1.0
    mask = L.Masking(-1.0, batch_first=True)
    np.testing.assert_array_equal(mask.compute_lengths(x), lengths)
    y = mask.train().forward(x)
    assert np.all(y[1, 2:] == 0) and np.array_equal(y[0], x[0])
    dx = mask.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx[..., 0], (np.arange(5)[None] < lengths[:, None]))
    gru = L.GRU(2, 3, batch_first=True, dtype=np.float64, seed=0)
    chain = fastrnn.Sequential([L.Masking(-1.0), gru, L.LastStep()])
    np.testing.assert_array_equal(chain.forward(x), fastrnn.Sequential(
        [gru, L.LastStep()]).forward(y, lengths=lengths))
    x[2, 1] = -1.0                                     # padding inside row 2
    with pytest.raises(ValueError, match=r"layer 0 \(Masking\).*row 2 is not a valid prefix"):
        chain.forward(x)
    with pytest.raises(TypeError, match="mask_value"):
        L.Masking("0")


def test_embedding_mask_zero_sets_the_lengths_and_saves(tmp_path):
    ids = np.array([[3, 1, 0, 0], [2, 2, 2, 5], [4, 0, 0, 0]])
    emb = L.Embedding(6, 3, mask_zero=True, seed=0)
    np.testing.assert_array_equal(emb.compute_lengths(ids, batch_first=True), [2, 4, 1])
    with pytest.raises(ValueError, match="mask_zero=True"):
        L.Embedding(6, 3).compute_lengths(ids)
    model = fastrnn.Sequential([emb, L.LSTM(3, 2, batch_first=True, seed=1), L.LastStep()])
    want = fastrnn.Sequential([L.LSTM(3, 2, batch_first=True, seed=1), L.LastStep()]).forward(
        emb.forward(ids), lengths=[2, 4, 1])
    np.testing.assert_array_equal(model.forward(ids), want)
    fastrnn.save(model, tmp_path / "masked.fastrnn")
    np.testing.assert_array_equal(fastrnn.load(tmp_path / "masked.fastrnn").forward(ids), want)
