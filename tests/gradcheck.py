"""Finite-difference checks of a layer's backward (float64), shared by the layer tests."""
import numpy as np


def numeric_grad(loss, arr, rng, n_entries=12, eps=1e-6):
    """Central differences of loss() w.r.t. up to n_entries random entries of arr (in place).
    Returns (flat indices, numeric derivatives)."""
    assert arr.flags.c_contiguous, "perturbing a view's copy would test nothing"
    flat = arr.reshape(-1)
    idx = rng.choice(flat.size, size=min(n_entries, flat.size), replace=False)
    out = []
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        up = loss()
        flat[i] = old - eps
        down = loss()
        flat[i] = old
        out.append((up - down) / (2 * eps))
    return idx, np.array(out)


def assert_close_fd(analytic, arr, loss, rng, name, rtol=1e-5, atol=1e-7, n_entries=12):
    idx, num = numeric_grad(loss, arr, rng, n_entries)
    ana = np.asarray(analytic).reshape(-1)[idx]
    np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol, err_msg=name)


def check_layer(layer, x, run, rng, n_entries=12, check_input=True):
    """`run(layer, x)` -> output array (forward in training mode). Checks d(sum(y*R))/dx and
    every parameter gradient against central differences."""
    y = run(layer, x)
    R = rng.standard_normal(np.shape(y))

    def loss():
        return float(np.sum(run(layer, x) * R))

    layer.zero_grad()
    run(layer, x)
    dx = layer.backward(R)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    if check_input:
        assert_close_fd(dx, x, loss, rng, "dx", n_entries=n_entries)
    for k, p in layer.parameters().items():
        assert_close_fd(grads[k], p, loss, rng, k, n_entries=n_entries)
    return dx, grads
