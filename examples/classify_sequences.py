"""Sequence classification with variable-length inputs.

Each sample is a sequence of token ids (lengths 5..40); the label says which of three
"motifs" (token pairs) occurs in it.  Embedding -> bidirectional LSTM -> mean pool over the
valid steps -> Dense, trained with fit(), early stopping and a checkpoint.

    python examples/classify_sequences.py [--quick]
"""
import sys
import tempfile

import numpy as np

import fastrnn
from fastrnn import callbacks, layers as L, optim

quick = "--quick" in sys.argv
rng = np.random.default_rng(0)
V, n = 30, 600 if quick else 3000
motifs = [(3, 4), (5, 6), (7, 8)]


def make(n):
    seqs, labels = [], []
    for _ in range(n):
        length = int(rng.integers(5, 41))
        s = rng.integers(9, V, length)
        label = int(rng.integers(0, 3))
        at = int(rng.integers(0, length - 1))
        s[at:at + 2] = motifs[label]
        seqs.append(s)
        labels.append(label)
    return seqs, np.array(labels)


x_train, y_train = make(n)
x_val, y_val = make(n // 5)

model = fastrnn.Sequential([
    L.Embedding(V, 32, seed=0),
    L.LSTM(32, 32, bidirectional=True, batch_first=True, seed=0),
    L.Pool("max", batch_first=True),
    L.Dense(64, 3, seed=0),
])
model.summary(input_shape=(None, None))

with tempfile.TemporaryDirectory() as tmp:
    best = f"{tmp}/best.fastrnn"
    history = model.fit(
        x_train, y_train, loss="cross_entropy", optimizer=optim.Adam(model, lr=5e-3),
        epochs=3 if quick else 15, batch_size=32, validation_data=(x_val, y_val),
        metrics=["accuracy"], clip_norm=1.0, seed=0,
        callbacks=[callbacks.EarlyStopping(monitor="val_accuracy", patience=3,
                                           restore_best_weights=True),
                   callbacks.ModelCheckpoint(best, monitor="val_accuracy",
                                             save_best_only=True)])
    restored = fastrnn.load(best)
print("validation:", model.evaluate(x_val, y_val, metrics=["accuracy"]))
print("checkpoint:", restored.evaluate(x_val, y_val, metrics=["accuracy"]))
