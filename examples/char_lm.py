"""A character-level language model with stateful truncated backpropagation through time,
then sampling with the streaming step function.

    python examples/char_lm.py [PATH] [--quick]

Without PATH it trains on this file's own source.  (``fastrnn train charlm --text PATH``
does the same from the command line.)
"""
import sys

import numpy as np

import fastrnn
from fastrnn import layers as L, optim

quick = "--quick" in sys.argv
args = [a for a in sys.argv[1:] if not a.startswith("--")]
text = open(args[0] if args else __file__, encoding="utf-8").read()
vocab = sorted(set(text))
ids = np.array([vocab.index(c) for c in text])
V, B, T = len(vocab), 16, 40

# B parallel streams cut into T-step chunks, ordered so that batch k holds chunk k of every
# stream: the stateful layer carries each stream's state from one batch to the next
x, y = fastrnn.data.tbptt_streams(ids, B, T)

embed = L.Embedding(V, 24, seed=0)
lstm = L.LSTM(24, 128, batch_first=True, stateful=True, seed=0)
head = L.Dense(128, V, seed=0)
model = fastrnn.Sequential([embed, lstm, head])
model.fit(x, y, loss="cross_entropy", optimizer=optim.Adam(model, lr=5e-3),
          epochs=2 if quick else 20, batch_size=B, clip_norm=5.0, metrics=["perplexity"])

# sampling: one character at a time through layer.step (packed weights, no sequence set-up)
model.eval()
rng = np.random.default_rng(0)
state, out, c = None, [], vocab.index(text[0])
for _ in range(200):
    h, state = lstm.step(embed.forward(np.array([c]))[0], state)
    logits = head.forward(h)
    p = np.exp((logits - logits.max()) / 0.7)
    c = int(rng.choice(V, p=p / p.sum()))
    out.append(vocab[c])
print(text[0] + "".join(out))
