"""Weight initializers.

Each initializer is a function ``init(shape, rng, dtype) -> ndarray``; layers take them by
name (``"glorot_uniform"``) or as a callable with that signature.  Shapes follow PyTorch's
layout, ``(fan_out, fan_in)`` for weight matrices.  For the stacked gate matrices of recurrent
layers (``(G*H, I)`` and ``(G*H, H)``) the recurrent-specific initializers
(``orthogonal``, ``identity``) work per gate block, so each gate's ``H x H`` matrix is
orthogonal (or the identity) on its own.

``pytorch`` is PyTorch's default for its recurrent and linear layers: U(-1/sqrt(fan), +1/sqrt(fan))
where ``fan`` is the hidden size for recurrent layers (the layers pass it) and the input size
for Dense.
"""
import numbers

import numpy as np

__all__ = ["get", "as_generator", "zeros", "ones", "pytorch_uniform", "uniform", "normal",
           "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
           "orthogonal", "identity", "NAMES"]


def as_generator(seed):
    """A numpy Generator from None, an int seed, or a Generator (returned as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
                        and seed >= 0):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be None, a non-negative int or a numpy.random.Generator, "
                    f"got {seed!r}")


def _fans(shape):
    """(fan_in, fan_out) of a PyTorch-layout weight (out, in); a vector counts as (n, n)."""
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[1], shape[0]


def zeros(shape, rng, dtype, **_):
    """All zeros."""
    return np.zeros(shape, dtype)


def ones(shape, rng, dtype, **_):
    """All ones."""
    return np.ones(shape, dtype)


def normal(shape, rng, dtype, std=1.0, **_):
    """N(0, std^2) (PyTorch's Embedding default with std=1)."""
    return (rng.standard_normal(shape) * std).astype(dtype)


def uniform(shape, rng, dtype, limit=0.05, **_):
    """U(-limit, limit) (default limit 0.05, as Keras's RandomUniform)."""
    return rng.uniform(-limit, limit, shape).astype(dtype)


def pytorch_uniform(shape, rng, dtype, fan=None, **_):
    """U(-1/sqrt(fan), 1/sqrt(fan)); fan defaults to the weight's fan_in."""
    fan = _fans(shape)[0] if fan is None else fan
    return uniform(shape, rng, dtype, limit=1.0 / np.sqrt(max(fan, 1)))


def glorot_uniform(shape, rng, dtype, **_):
    """Glorot & Bengio (2010): U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return uniform(shape, rng, dtype, limit=np.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(shape, rng, dtype, **_):
    """N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def he_uniform(shape, rng, dtype, **_):
    """He et al. (2015): U(-a, a), a = sqrt(6 / fan_in)."""
    return uniform(shape, rng, dtype, limit=np.sqrt(6.0 / _fans(shape)[0]))


def he_normal(shape, rng, dtype, **_):
    """N(0, 2 / fan_in)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / _fans(shape)[0])).astype(dtype)


def _gate_blocks(shape, blocks):
    rows, cols = shape
    if blocks is None:
        blocks = max(rows // cols, 1) if rows % cols == 0 else 1
    if rows % blocks:
        raise ValueError(f"cannot split {rows} rows into {blocks} gate blocks")
    return blocks, rows // blocks, cols


def orthogonal(shape, rng, dtype, gain=1.0, blocks=None, **_):
    """Each gate block an orthogonal matrix (Saxe et al. 2014), scaled by `gain`: a
    (G*H, H) recurrent matrix gets G independent H x H orthogonal blocks."""
    if len(shape) != 2:
        raise ValueError(f"orthogonal needs a 2-D shape, got {shape}")
    blocks, rows, cols = _gate_blocks(shape, blocks)
    out = []
    for _ in range(blocks):
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))            # uniform (Haar) distribution
        out.append(q if rows >= cols else q.T)
    return (gain * np.concatenate(out, axis=0)).astype(dtype)


def identity(shape, rng, dtype, gain=1.0, blocks=None, **_):
    """Each gate block `gain` times the identity (Le et al. 2015, "IRNN")."""
    if len(shape) != 2:
        raise ValueError(f"identity needs a 2-D shape, got {shape}")
    blocks, rows, cols = _gate_blocks(shape, blocks)
    return np.concatenate([gain * np.eye(rows, cols) for _ in range(blocks)],
                          axis=0).astype(dtype)


NAMES = {
    "zeros": zeros, "ones": ones, "pytorch": pytorch_uniform, "uniform": uniform,
    "normal": normal,
    "glorot_uniform": glorot_uniform, "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal, "xavier_normal": glorot_normal,
    "he_uniform": he_uniform, "kaiming_uniform": he_uniform,
    "he_normal": he_normal, "kaiming_normal": he_normal,
    "orthogonal": orthogonal, "identity": identity,
}


def get(name, argname="initializer"):
    """The initializer function for a name or callable; ValueError naming `argname`."""
    if callable(name):
        return name
    if isinstance(name, str) and name in NAMES:
        return NAMES[name]
    raise ValueError(f"{argname} must be one of {sorted(NAMES)} or a callable "
                     f"(shape, rng, dtype) -> array, got {name!r}")
