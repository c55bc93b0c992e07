"""layers.Attention: against a loop-by-loop NumPy reference, float64 finite differences of
keys, query and every parameter, masking, layouts, composition in a Sequential that trains,
saves and loads, and bad input."""
import numpy as np
import pytest

import fastrnn
from fastrnn import layers as L
from gradcheck import assert_close_fd


def reference(layer, K, q, lengths):
    """Loops: K (T, B, H), q (Tq, B, Q) -> context (Tq, B, H), weights (Tq, B, T)."""
    T, B, H = K.shape
    Tq = q.shape[0]
    p = layer.parameters()
    ctx = np.zeros((Tq, B, H))
    w = np.zeros((Tq, B, T))
    for b in range(B):
        n = T if lengths is None else lengths[b]
        for i in range(Tq):
            s = np.empty(n)
            for t in range(n):
                k, qq = K[t, b].astype(np.float64), q[i, b].astype(np.float64)
                if layer.score == "dot":
                    s[t] = qq @ k
                elif layer.score == "general":
                    s[t] = qq @ p["weight"] @ k
                else:
                    s[t] = p["v"] @ np.tanh(p["weight_query"] @ qq + p["weight_key"] @ k)
                if layer.scale:
                    s[t] /= np.sqrt(H)
            e = np.exp(s - s.max())
            w[i, b, :n] = e / e.sum()
            ctx[i, b] = w[i, b, :n] @ K[:n, b]
    return ctx, w


CASES = [dict(score="dot"), dict(score="dot", scale=True), dict(score="general"),
         dict(score="general", query_size=3, scale=True), dict(score="additive"),
         dict(score="additive", query_size=5, attention_size=7)]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("with_query", [False, True], ids=["pooling", "query"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 4]], ids=["full", "ragged"])
def test_matches_loop_reference(case, with_query, lengths):
    kw = CASES[case]
    layer = L.Attention(4, dtype=np.float64, seed=1, **kw)
    rng = np.random.default_rng(case)
    K = rng.standard_normal((6, 3, 4))
    q = rng.standard_normal((5, 3, layer.query_size)) if with_query else None
    ctx, w = layer.forward(K, q, lengths=lengths)
    qq = q if with_query else np.broadcast_to(layer.parameters()["query"], (1, 3,
                                                                          layer.query_size))
    rc, rw = reference(layer, K, qq, lengths)
    if not with_query:
        rc, rw = rc[0], rw[0]
    np.testing.assert_allclose(ctx, rc, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(w, rw, rtol=1e-12, atol=1e-13)
    if lengths is not None:                        # padded steps get exactly zero weight
        for b, n in enumerate(lengths):
            assert np.all(w[..., b, n:] == 0)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("with_query", [False, True], ids=["pooling", "query"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_finite_differences(case, with_query, batch_first):
    layer = L.Attention(4, dtype=np.float64, seed=2, batch_first=batch_first, **CASES[case])
    rng = np.random.default_rng(10 + case)
    lengths = np.array([5, 2, 4])
    shape = (3, 5, 4) if batch_first else (5, 3, 4)
    K = rng.standard_normal(shape)
    q = (rng.standard_normal((3, 2, layer.query_size) if batch_first
                             else (2, 3, layer.query_size)) if with_query else None)
    ctx, w = layer.forward(K, q, lengths=lengths)
    Rc, Rw = rng.standard_normal(ctx.shape), rng.standard_normal(w.shape)

    def loss():
        c, a = layer.forward(K, q, lengths=lengths, training=False)
        return float(np.sum(c * Rc) + np.sum(a * Rw))

    layer.zero_grad()
    layer.forward(K, q, lengths=lengths)
    out = layer.backward(Rc, Rw)
    dK, dq = out if with_query else (out, None)
    assert_close_fd(dK, K, loss, rng, "keys", rtol=1e-6, atol=1e-8)
    if with_query:
        assert_close_fd(dq, q, loss, rng, "query", rtol=1e-6, atol=1e-8)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    for name, p in layer.parameters().items():
        if name == "query" and with_query:
            assert np.all(grads[name] == 0)          # not used with an explicit query
            continue
        assert_close_fd(grads[name], p, loss, rng, name, rtol=1e-6, atol=1e-8)


def test_float32_and_large_scores_are_stable():
    layer = L.Attention(8, score="dot", seed=0)
    K = (np.random.default_rng(0).standard_normal((20, 4, 8)) * 300).astype(np.float32)
    ctx, w = layer.forward(K, lengths=[20, 3, 1, 7])
    assert ctx.dtype == np.float32 and w.dtype == np.float32
    assert np.all(np.isfinite(ctx)) and np.all(np.isfinite(w))
    assert w[2, 0] == 1.0 and np.all(w[2, 1:] == 0)      # one valid step: all its weight
    d = layer.backward(np.ones_like(ctx))
    assert d.dtype == np.float32 and np.all(np.isfinite(d))


def test_composes_trains_saves_and_loads(tmp_path):
    """Embedding -> LSTM -> attention pooling -> Dense learns which of two marker tokens a
    sequence of noise tokens holds (anywhere in it)."""
    rng = np.random.default_rng(0)
    N, T = 256, 12
    x = rng.integers(2, 10, (N, T))
    y = rng.integers(0, 2, N)
    x[np.arange(N), rng.integers(0, T, N)] = 10 + y     # the marker: token 10 or 11
    model = fastrnn.Sequential([L.Embedding(12, 8, seed=0),
                                L.LSTM(8, 16, batch_first=True, bidirectional=True, seed=0),
                                L.Attention(32, score="general", seed=0),
                                L.Dense(32, 2, seed=0)])
    hist = model.fit(x, y, loss="cross_entropy", optimizer=fastrnn.optim.Adam(model, lr=0.01),
                     epochs=10, batch_size=32, seed=0, verbose=0, metrics=["accuracy"])
    assert hist.history["accuracy"][-1] > 0.95, hist.history["accuracy"]
    path = tmp_path / "att.npz"
    fastrnn.save(model, path)
    again = fastrnn.load(path)
    assert isinstance(again.layers[2], L.Attention) and again.layers[2].score == "general"
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_bad_input():
    with pytest.raises(ValueError, match="score must be one of"):
        L.Attention(4, score="cosine")
    with pytest.raises(ValueError, match="score='dot' needs query_size == key_size"):
        L.Attention(4, query_size=3)
    with pytest.raises(ValueError, match="attention_size is for score='additive' only"):
        L.Attention(4, attention_size=3)
    with pytest.raises(ValueError, match="scale=True is for the dot and general scores"):
        L.Attention(4, score="additive", scale=True)
    layer = L.Attention(4, learned_query=False)
    K = np.zeros((3, 2, 4), np.float32)
    with pytest.raises(ValueError, match="no learned query"):
        layer.forward(K)
    with pytest.raises(ValueError, match="keys must have 4 features"):
        layer.forward(np.zeros((3, 2, 5)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="query must have the keys' batch size 2"):
        layer.forward(K, np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T\]"):
        layer.forward(K, np.zeros((1, 2, 4)), lengths=[4, 1])
    pooled = L.Attention(4)
    pooled.forward(K)
    with pytest.raises(ValueError, match=r"d_context must have shape \(2, 4\)"):
        pooled.backward(np.zeros((3, 2, 4)))


class AttnSeq2Seq(fastrnn.Model):
    """Encoder LSTM, decoder LSTM started from the encoder's state, Luong attention of the
    decoder states over the encoder outputs, Dense over [decoder state, context]."""

    def __init__(self, vocab, hidden, score="general"):
        super().__init__()
        d = np.float64
        self.vocab, self.hidden, self.score = vocab, hidden, score
        self.src_embed = L.Embedding(vocab, hidden, dtype=d, seed=0)
        self.tgt_embed = L.Embedding(vocab, hidden, dtype=d, seed=1)
        self.encoder = L.LSTM(hidden, hidden, dtype=d, seed=2)
        self.decoder = L.LSTM(hidden, hidden, dtype=d, seed=3)
        self.attention = L.Attention(hidden, score=score, learned_query=False, dtype=d,
                                     seed=4)
        self.out = L.Dense(2 * hidden, vocab, dtype=d, seed=5)

    def forward(self, src, tgt_in, src_lengths=None):
        keys, state = self.encoder.forward(self.src_embed.forward(src), lengths=src_lengths)
        dec, _ = self.decoder.forward(self.tgt_embed.forward(tgt_in), state=state)
        ctx, self.weights = self.attention.forward(keys, dec, lengths=src_lengths)
        return self.out.forward(np.concatenate([dec, ctx], axis=-1))

    def backward(self, dlogits):
        H = self.hidden
        d = self.out.backward(dlogits)
        d_keys, d_dec = self.attention.backward(d[..., H:])
        self.tgt_embed.backward(self.decoder.backward(d[..., :H] + d_dec))
        self.src_embed.backward(self.encoder.backward(d_keys,
                                                      dstate=self.decoder.state_grad))

    def get_config(self):
        return {"vocab": self.vocab, "hidden": self.hidden, "score": self.score}


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_encoder_decoder_model_gradients(score):
    from fastrnn import losses
    rng = np.random.default_rng(3)
    model = AttnSeq2Seq(7, 4, score)
    src, tgt_in, tgt_out = (rng.integers(0, 7, (5, 3)), rng.integers(0, 7, (4, 3)),
                            rng.integers(0, 7, (4, 3)))
    src_lengths = np.array([5, 2, 4])
    ce = losses.CrossEntropy()

    def loss():
        return ce.forward(model.forward(src, tgt_in, src_lengths), tgt_out)

    model.zero_grad()
    loss()
    assert model.weights.shape == (4, 3, 5) and np.all(model.weights[:, 1, 2:] == 0)
    model.backward(ce.backward())
    grads = {k: v.copy() for k, v in model.grads.items()}
    assert any(k.startswith("attention.") for k in grads) == (score != "dot")
    for k, p in model.parameters().items():
        assert_close_fd(grads[k], p, loss, rng, k, rtol=1e-6, atol=1e-8, n_entries=5)
