"""Shared set-up for the pytest-benchmark suite (run: pytest bench/ --benchmark-only)."""
import numpy as np
import pytest

SHAPES = [(8, 50, 32, 64), (64, 100, 128, 256), (128, 100, 512, 512), (1, 100, 64, 256)]  # (B, T, I, H)
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def make_problem(cell, B, T, I, H, dtype=np.float32, seed=0):
    """Random x (T, B, I), states, PyTorch-layout weights and output gradients."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1 / np.sqrt(H)
    p = {
        "x": rng.standard_normal((T, B, I)).astype(dtype),
        "h0": rng.standard_normal((B, H)).astype(dtype) * 0.1,
        "c0": rng.standard_normal((B, H)).astype(dtype) * 0.1,
        "w_ih": rng.uniform(-k, k, (G * H, I)).astype(dtype),
        "w_hh": rng.uniform(-k, k, (G * H, H)).astype(dtype),
        "b_ih": rng.uniform(-k, k, G * H).astype(dtype),
        "b_hh": rng.uniform(-k, k, G * H).astype(dtype),
        "dy": rng.standard_normal((T, B, H)).astype(dtype),
    }
    return p


@pytest.fixture(scope="session")
def torch_mod():
    return pytest.importorskip("torch")
