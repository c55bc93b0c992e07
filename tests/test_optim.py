"""Optimizers and clipping: 100 steps against torch.optim on the same gradients, NumPy
formulas when torch is absent, state_dict resume, bad input."""
import numpy as np
import pytest

import fastrnn
from fastrnn import clip, optim
from fastrnn import layers as L

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=1e-3)),
    ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True, weight_decay=1e-3)),
    ("RMSprop", dict(lr=1e-3, alpha=0.9, centered=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=1e-3,
                     initial_accumulator_value=0.1)),
]


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((7, 5)).astype(dtype),
              "b": rng.standard_normal(5).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) * (1 + i % 3)
              for k, v in params.items()} for i in range(100)]
    return params, grads


@pytest.mark.parametrize("name,kw", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hundred_steps_match_torch(name, kw, dtype):
    torch = pytest.importorskip("torch")
    params, grads = _problem(dtype)
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    ours = getattr(optim, name)(params, **kw)
    theirs = getattr(torch.optim, name)(list(tparams.values()), **kw)
    for g in grads:
        ours.step(g)
        for k, t in tparams.items():
            t.grad = torch.tensor(g[k])
        theirs.step()
    tol = dict(rtol=1e-11, atol=1e-13) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    for k, t in tparams.items():
        np.testing.assert_allclose(params[k], t.detach().numpy(), err_msg=k, **tol)
    # the buffers too
    for k, st in zip(ours.names, ours.state):
        tstate = theirs.state[tparams[k]]
        for key, buf in st.items():
            if isinstance(buf, np.ndarray):
                np.testing.assert_allclose(buf.reshape(params[k].shape),
                                           tstate[key].numpy(), err_msg=f"{k}.{key}", **tol)


def test_adam_matches_the_paper_formula_in_numpy():
    params, grads = _problem(np.float64)
    w = params["w"].copy()
    opt = optim.Adam({"w": params["w"]}, lr=0.01)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        opt.step({"w": g["w"]})
        m = 0.9 * m + 0.1 * g["w"]
        v = 0.999 * v + 0.001 * g["w"] ** 2
        w -= 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(params["w"], w, rtol=1e-10)


def test_sgd_on_a_model_reads_its_grads_and_updates_in_place():
    model = fastrnn.Sequential([L.Dense(3, 2, dtype=np.float64, seed=0)])
    w = model.parameters()["0.weight"]
    before = w.copy()
    opt = optim.SGD(model, lr=0.5)
    model.forward(np.ones((4, 3)))
    model.backward(np.ones((4, 2)))
    opt.step()
    np.testing.assert_allclose(w, before - 0.5 * model.grads["0.weight"])
    assert model.parameters()["0.weight"] is w


def test_state_dict_resume_gives_identical_trajectory():
    params_a, grads = _problem(np.float64)
    params_b = {k: v.copy() for k, v in params_a.items()}
    a = optim.Adam(params_a, lr=1e-2, amsgrad=True)
    for g in grads[:50]:
        a.step(g)
    b = optim.Adam(params_b, lr=0.5)
    for k in params_b:
        params_b[k][...] = params_a[k]
    b.load_state_dict(a.state_dict())
    assert b.lr == 1e-2 and b.steps == 50
    for g in grads[50:]:
        a.step(g)
        b.step(g)
    for k in params_a:
        np.testing.assert_array_equal(params_a[k], params_b[k])


def test_lr_can_be_changed_between_steps():
    p = {"w": np.ones(3)}
    opt = optim.SGD(p, lr=1.0)
    opt.step({"w": np.ones(3)})
    opt.lr = 0.5
    opt.step({"w": np.ones(3)})
    np.testing.assert_allclose(p["w"], -0.5)


@pytest.mark.parametrize("make,exc,match", [
    (lambda p: optim.SGD(p, lr=-1), ValueError, "lr must be in"),
    (lambda p: optim.SGD(p, lr=float("nan")), ValueError, "lr must be a finite number"),
    (lambda p: optim.SGD(p, nesterov=True), ValueError, "nesterov"),
    (lambda p: optim.Adam(p, betas=(0.9,)), ValueError, "betas must be a pair"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.9)), ValueError, r"betas\[0\] must be in"),
    (lambda p: optim.Adam(p, amsgrad=1), TypeError, "amsgrad"),
    (lambda p: optim.RMSprop(p, alpha=1.5), ValueError, "alpha"),
    (lambda p: optim.Adagrad(p, eps="x"), ValueError, "eps"),
    (lambda p: optim.SGD(3), TypeError, "params must be"),
    (lambda p: optim.SGD({}), ValueError, "params is empty"),
    (lambda p: optim.SGD({"w": np.zeros(3, int)}), TypeError, "parameter 'w' must be a float32"),
    (lambda p: optim.SGD({"w": np.zeros((3, 3))[:, 0]}), ValueError, "C-contiguous"),
    (lambda p: optim.SGD(p).step(), TypeError, "step.. needs the gradients"),
    (lambda p: optim.SGD(p).step({"x": np.zeros(3)}), KeyError, "no entry"),
    (lambda p: optim.SGD(p).step({"w": np.zeros(4)}), ValueError, r"gradient of 'w' must have"),
    (lambda p: optim.SGD(p).step([np.zeros(3), np.zeros(3)]), ValueError, "list of 1 arrays"),
    (lambda p: optim.SGD(p).load_state_dict(optim.Adam(p).state_dict()), ValueError,
     "not a SGD state dict"),
])
def test_bad_input(make, exc, match):
    with pytest.raises(exc, match=match):
        make({"w": np.zeros(3)})


# ----------------------------------------------------------------------------------------
# clipping

@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(5)}
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for t, g in zip(ts, grads.values()):
        t.grad = torch.tensor(g)
    tn = torch.nn.utils.clip_grad_norm_(ts, 1.5, norm_type=norm_type)
    n = clip.clip_grad_norm(grads, 1.5, norm_type=norm_type)
    assert np.isclose(n, tn.item(), rtol=1e-12)
    for t, g in zip(ts, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_small_norm_untouched_and_nonfinite():
    g = {"a": np.array([0.1, 0.2], np.float32)}
    assert np.isclose(clip.clip_grad_norm(g, 1.0), np.sqrt(0.05))
    np.testing.assert_array_equal(g["a"], np.array([0.1, 0.2], np.float32))
    bad = {"a": np.array([np.nan, 1.0])}
    with pytest.raises(RuntimeError, match="non-finite"):
        clip.clip_grad_norm(bad, 1.0, error_if_nonfinite=True)
    assert np.isnan(clip.clip_grad_norm(bad, 1.0))
    inf = [np.array([np.inf, 1.0])]
    assert np.isinf(clip.clip_grad_norm(inf, 1.0))
    np.testing.assert_array_equal(inf[0][1], 0.0)          # scaled by 1/inf, as torch


def test_clip_grad_value():
    g = [np.array([-3.0, -0.5, 0.5, 3.0, np.nan])]
    clip.clip_grad_value(g, 1.0)
    np.testing.assert_array_equal(g[0][:4], [-1, -0.5, 0.5, 1])
    assert np.isnan(g[0][4])
    model = L.Dense(2, 2, seed=0)
    model.forward(np.full((3, 2), 10, np.float32))
    model.backward(np.full((3, 2), 10, np.float32))
    clip.clip_grad_value(model, 0.1)
    assert max(np.abs(v).max() for v in model.grads.values()) <= np.float32(0.1)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: clip.clip_grad_norm({"a": np.zeros(2)}, 0), ValueError, "max_norm must be"),
    (lambda: clip.clip_grad_norm({"a": np.zeros(2)}, 1, norm_type=-1), ValueError, "norm_type"),
    (lambda: clip.clip_grad_norm({"a": [1.0]}, 1), TypeError, r"grads\['a'\] must be"),
    (lambda: clip.clip_grad_norm(5, 1), TypeError, "grads must be"),
    (lambda: clip.clip_grad_value([np.zeros(2)], float("nan")), ValueError, "clip_value"),
    (lambda: clip.clip_grad_value([np.zeros((2, 2)).T[0]], 1.0), ValueError, "C-contiguous"),
])
def test_clip_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_params_forms_and_what_a_wrong_one_says():
    from fastrnn import layers as L
    enc, dec = L.GRU(3, 4, seed=0), L.Dense(4, 2, seed=1)
    opt = optim.Adam([enc, dec], lr=0.1)
    assert opt.names == [f"0.{k}" for k in enc.parameters()] + \
        [f"1.{k}" for k in dec.parameters()]
    before = {k: v.copy() for k, v in dec.parameters().items()}
    dec.forward(np.ones((2, 4), np.float32))
    dec.backward(np.ones((2, 2), np.float32))
    opt.step()                                     # reads each layer's grads
    assert not np.array_equal(before["weight"], dec.parameters()["weight"])
    with pytest.raises(TypeError, match=r"params\[1\] is a Dense layer in a list that also "
                                        r"holds arrays"):
        optim.SGD([enc.parameters()["weight_ih_l0"], dec])
    with pytest.raises(TypeError, match=r"params\[0\] must be a float32 or float64 ndarray, "
                                        r"got list"):
        optim.SGD([[1.0, 2.0]])
    with pytest.raises(TypeError, match="got dtype int64"):
        optim.SGD([np.zeros(3, np.int64)])
    with pytest.raises(TypeError, match="a list of layers"):
        optim.SGD(3)
    assert "list of layers" in optim.Optimizer.__doc__ and "list of layers" in optim.__doc__
