"""An LSTM encoder with attention pooling, on variable-length sequences, and where it looks.

Each sample is a sequence of noise tokens (lengths 10..60) holding one keyword, token 1 or 2,
at a random position; the label is which keyword.  Embedding -> bidirectional LSTM ->
Attention (a learned query scores every valid step; padded steps get weight 0) -> Dense.
After training, the attention weights of a few validation sequences are compared with the
keyword's position.

    python examples/attention_classifier.py [--quick]
"""
import sys

import numpy as np

import fastrnn
from fastrnn import layers as L, optim
from fastrnn.data import pad_sequences

quick = "--quick" in sys.argv
rng = np.random.default_rng(0)
V, n = 20, 800 if quick else 4000


def make(n):
    seqs, labels, where = [], [], []
    for _ in range(n):
        length = int(rng.integers(10, 61))
        s = rng.integers(3, V, length)
        label = int(rng.integers(0, 2))
        at = int(rng.integers(0, length))
        s[at] = 1 + label
        seqs.append(s)
        labels.append(label)
        where.append(at)
    return seqs, np.array(labels), np.array(where)


x_train, y_train, _ = make(n)
x_val, y_val, at_val = make(n // 4)

H = 24
model = fastrnn.Sequential([
    L.Embedding(V, 16, seed=0),
    L.LSTM(16, H, bidirectional=True, batch_first=True, seed=0),
    L.Attention(2 * H, score="general", seed=0),
    L.Dense(2 * H, 2, seed=0),
])
model.fit(x_train, y_train, loss="cross_entropy", optimizer=optim.Adam(model, lr=5e-3),
          epochs=4 if quick else 10, batch_size=32, validation_data=(x_val, y_val),
          metrics=["accuracy"], clip_norm=1.0, seed=0, verbose=0)
print("validation:", model.evaluate(x_val, y_val, metrics=["accuracy"]))

# where the attention goes: run the layers by hand on a few padded validation sequences
k = 5
padded, lengths = pad_sequences(x_val[:k])
emb, lstm, att = model.layers[0], model.layers[1], model.layers[2]
h, _ = lstm.forward(emb.forward(padded, training=False), lengths=lengths, training=False)
context, weights = att.forward(h, lengths=lengths, training=False)
for i in range(k):
    top = int(weights[i].argmax())
    print(f"sequence {i}: length {lengths[i]}, keyword at step {at_val[i]}, most attention at "
          f"step {top} ({weights[i, top]:.2f} of the weight)")
