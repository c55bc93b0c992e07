"""Time-series forecasting: predict the next value of a noisy signal from a window of the
last 48 observations with a GRU, then roll the model forward to forecast 24 steps.

    python examples/forecast.py [--quick]
"""
import sys

import numpy as np

import fastrnn
from fastrnn import layers as L, optim, schedules

quick = "--quick" in sys.argv
rng = np.random.default_rng(0)
t = np.arange(6000 if not quick else 1500)
series = np.sin(0.07 * t) + 0.5 * np.sin(0.021 * t + 1) + 0.05 * rng.standard_normal(len(t))
series = series.astype(np.float32)

W = 48
windows = np.lib.stride_tricks.sliding_window_view(series[:-1], W)        # (N, W)
x = windows[:, :, None].copy()                                           # (N, W, 1)
y = series[W:, None]                                                     # the next value
split = int(0.8 * len(x))

model = fastrnn.Sequential([L.GRU(1, 32, batch_first=True, seed=0),
                            L.LastStep(batch_first=True), L.Dense(32, 1, seed=0)])
opt = optim.Adam(model, lr=1e-2)
model.fit(x[:split], y[:split], loss="mse", optimizer=opt, epochs=2 if quick else 8,
          batch_size=64, validation_data=(x[split:], y[split:]), metrics=["mae"],
          callbacks=[schedules.CosineLR(total_epochs=8)], seed=0)

naive = float(np.mean((x[split:, -1] - y[split:]) ** 2))
print(f"validation MSE {model.evaluate(x[split:], y[split:], loss='mse')['loss']:.5f} "
      f"(repeating the last value: {naive:.5f})")

# forecast 24 steps ahead by feeding predictions back in
window = series[split:split + W].copy()
forecast = []
for _ in range(24):
    nxt = model.predict(window[None, :, None])[0, 0]
    forecast.append(nxt)
    window = np.append(window[1:], nxt)
print("forecast:", np.round(forecast[:8], 3), "...")
