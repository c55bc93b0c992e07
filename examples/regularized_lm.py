"""Where the regularizers visibly help: a character LM large enough to overfit its text,
trained with and without variational recurrent dropout, zoneout, DropConnect and LayerNorm.

    python examples/regularized_lm.py [PATH] [--quick]

Without PATH it trains on the source of fastrnn.layers (about 95 KB of Python that every
install has).  For each setting it prints the best validation perplexity (and its epoch) and
the last one: without regularization the model learns the training text by heart and the
validation perplexity climbs back up after its best epoch.  (``fastrnn train charlm --text
PATH --hidden 256 --recurrent-dropout 0.25`` runs one setting from the command line.)
"""
import glob
import os
import sys
import tempfile

import numpy as np

import fastrnn.layers
from fastrnn import tasks

quick = "--quick" in sys.argv
args = [a for a in sys.argv[1:] if not a.startswith("--")]
if args:
    path = args[0]
else:
    files = sorted(glob.glob(os.path.join(os.path.dirname(fastrnn.layers.__file__), "*.py")))
    path = os.path.join(tempfile.mkdtemp(), "fastrnn_layers.txt")
    with open(path, "w", encoding="utf-8") as out:
        for name in files:
            with open(name, encoding="utf-8") as f:
                out.write(f.read())

settings = {
    "none": {},
    "recurrent_dropout=0.25": dict(recurrent_dropout=0.25),
    "zoneout=(0.05, 0.5)": dict(zoneout=(0.05, 0.5)),
    "weight_drop=0.3": dict(weight_drop=0.3),
    "layer_norm": dict(layer_norm=True),
    "layer_norm + recurrent_dropout=0.25": dict(layer_norm=True, recurrent_dropout=0.25),
}
if quick:
    settings = {k: settings[k] for k in ("none", "recurrent_dropout=0.25")}
steps, hidden = (60, 64) if quick else (3000, 256)
print(f"text: {path}; LSTM H = {hidden}, {steps} steps; validation perplexity per setting")
print(f"{'setting':38s} {'best':>7s} {'epoch':>6s} {'last':>7s} {'seconds':>8s}")
for name, options in settings.items():
    task = tasks.get_task("charlm", text=path, hidden=hidden, steps=steps, sample=0, **options)
    result, model, history = tasks.run(task, verbose=0, seed=0, stop_at_target=False)
    curve = history.history["val_perplexity"]
    best = int(np.argmin(curve))
    print(f"{name:38s} {curve[best]:7.3f} {best + 1:6d} {curve[-1]:7.3f} "
          f"{result['wall_time_s']:8.1f}", flush=True)
