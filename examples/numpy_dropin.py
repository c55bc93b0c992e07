"""The functional API as a drop-in for a hand-written NumPy RNN loop.

A NumPy LSTM forward is a Python loop over time with one matrix product per step; fastrnn's
``F.lstm_forward`` does the same computation (same weight layout as PyTorch) in compiled code
with the GIL released, and ``F.lstm_backward`` gives the exact gradients.  Here both fit a
tiny regression with plain gradient descent written in NumPy.

    python examples/numpy_dropin.py [--quick]
"""
import sys
import time

import numpy as np

from fastrnn import functional as F

quick = "--quick" in sys.argv
rng = np.random.default_rng(0)
T, B, I, H = 50, 32, 8, 64
x = rng.standard_normal((T, B, I)).astype(np.float32)
target = np.tanh(x.cumsum(axis=0)[-1, :, :1])             # (B, 1): depends on the whole sequence

w_ih = rng.uniform(-0.1, 0.1, (4 * H, I)).astype(np.float32)
w_hh = rng.uniform(-0.1, 0.1, (4 * H, H)).astype(np.float32)
b = np.zeros(4 * H, np.float32)
w_out = rng.uniform(-0.1, 0.1, (H, 1)).astype(np.float32)


def numpy_lstm(x, w_ih, w_hh, b):
    """The loop fastrnn replaces (forward only)."""
    h = np.zeros((x.shape[1], H), np.float32)
    c = np.zeros_like(h)
    for t in range(x.shape[0]):
        g = x[t] @ w_ih.T + h @ w_hh.T + b
        i, f, gg, o = np.split(g, 4, axis=1)
        sig = lambda v: 1 / (1 + np.exp(-v))             # noqa: E731
        c = sig(f) * c + sig(i) * np.tanh(gg)
        h = sig(o) * np.tanh(c)
    return h


y, hT, cT, _ = F.lstm_forward(x, None, None, w_ih, w_hh, b, None, training=False)
print("max |fastrnn - numpy| =", float(np.abs(hT - numpy_lstm(x, w_ih, w_hh, b)).max()))


def best_ms(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


print(f"forward: numpy {best_ms(lambda: numpy_lstm(x, w_ih, w_hh, b)):.2f} ms, fastrnn "
      f"{best_ms(lambda: F.lstm_forward(x, None, None, w_ih, w_hh, b, None, training=False)):.2f} ms")

lr = 0.5
for step in range(50 if quick else 300):
    y, hT, cT, cache = F.lstm_forward(x, None, None, w_ih, w_hh, b, None)
    pred = hT @ w_out
    err = pred - target
    loss = float((err ** 2).mean())
    d_pred = 2 * err / err.size
    g = F.lstm_backward(None, d_pred @ w_out.T, None, cache)    # only the final h is used
    w_out -= lr * (hT.T @ d_pred)
    w_ih -= lr * g.dw_ih
    w_hh -= lr * g.dw_hh
    b -= lr * g.db_ih
    if step % 50 == 0:
        print(f"step {step:3d}  loss {loss:.4f}")
print(f"final loss {loss:.4f} (predicting the mean: {float(target.var()):.4f})")
