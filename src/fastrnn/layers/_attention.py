"""Attention over a sequence of RNN outputs (vectorized NumPy; see Attention)."""
import numpy as np

from fastrnn import init as _init
from fastrnn.functional import _prepare_lengths
from fastrnn.layers._base import (ChainLayout, Layer, check_bool, check_dtype, check_int,
                                  float_input, no_cache_error, refuse_sequence_list)

__all__ = ["Attention"]

SCORES = ("dot", "general", "additive")


class Attention(ChainLayout, Layer):
    """Attention over a sequence of keys/values (an RNN's outputs): for each query, weights
    ``a = softmax(score(q, k_t))`` over the valid steps t and the context ``sum_t a_t k_t``.

    - ``score="dot"``: ``q . k_t`` (Luong et al. 2015; query_size = key_size);
      ``"general"``: ``q . (W k_t)``, W (query_size, key_size) (Luong);
      ``"additive"``: ``v . tanh(W_q q + W_k k_t)`` with ``attention_size`` units (Bahdanau
      et al. 2015).  ``scale=True`` divides the scores by sqrt(key_size) (dot and general).
    - Without a query (``forward(keys)``) the query is a learned vector ``query``
      (query_size,): attention pooling for classification (Raffel & Ellis 2015, Yang et al.
      2016): (T, B, H) -> context (B, H), weights (B, T).  With a query sequence
      (``forward(keys, query)``, decoder states (Tq, B, Hq)): context (Tq, B, H), weights
      (Tq, B, T) (batch-first layouts: (B, Tq, H) and (B, Tq, T)).
    - ``lengths`` (B,) masks each row's padded key steps: their weights are exactly 0.
    - ``batch_first=None`` (default) takes the layout of the recurrent layer before it in a
      Sequential (time-major on its own); in a Sequential the layer passes on the context only.

    ``forward`` returns ``(context, weights)``; ``backward(d_context)`` returns the gradient of
    the keys, or ``(d_keys, d_query)`` when the forward had a query, and adds the parameters'
    gradients into ``grads``.  float32 or float64 (``dtype``); the softmax is computed stably
    (maximum subtracted).
    """

    uses_lengths = True

    def __init__(self, key_size, query_size=None, score="dot", *, attention_size=None,
                 scale=False, learned_query=True, batch_first=None, dtype=np.float32,
                 seed=None):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.key_size = check_int("key_size", key_size)
        self.query_size = self.key_size if query_size is None else check_int("query_size",
                                                                             query_size)
        if score == "dot" and self.query_size != self.key_size:
            raise ValueError(f"score='dot' needs query_size == key_size, got query_size "
                             f"{self.query_size} and key_size {self.key_size}; use "
                             f"score='general' or 'additive' for different sizes")
        if attention_size is not None and score != "additive":
            raise ValueError("attention_size is for score='additive' only")
        self.score = score
        self.attention_size = (check_int("attention_size", attention_size)
                               if attention_size is not None else
                               (self.key_size if score == "additive" else None))
        self.scale = check_bool("scale", scale)
        if self.scale and score == "additive":
            raise ValueError("scale=True is for the dot and general scores")
        self.learned_query = check_bool("learned_query", learned_query)
        self._init_layout(batch_first)
        self.dtype = check_dtype(dtype)
        H, Q, A = self.key_size, self.query_size, self.attention_size
        if self.learned_query:
            self.add_parameter("query", (Q,), self.dtype)
        if score == "general":
            self.add_parameter("weight", (Q, H), self.dtype)
        elif score == "additive":
            self.add_parameter("weight_query", (A, Q), self.dtype)
            self.add_parameter("weight_key", (A, H), self.dtype)
            self.add_parameter("v", (A,), self.dtype)
        self._cache = None
        self.reset_parameters(seed)

    def reset_parameters(self, seed=None):
        """Draw new parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``seed``: int or
        Generator)."""
        rng = _init.as_generator(seed)
        for name, arr in self._params.items():
            fan = arr.shape[-1]
            arr[...] = _init.pytorch_uniform(arr.shape, rng, self.dtype, fan=fan)

    # -- forward ---------------------------------------------------------------------------
    def _sequence(self, name, value, size):
        bf = self.layout_batch_first
        refuse_sequence_list(value, bf, "H")
        arr = float_input(name, value, self.dtype, ndim=3,
                          what="3-D ((B, T, H) with batch_first)" if bf else "3-D (T, B, H)")
        if arr.shape[2] != size:
            raise ValueError(f"{name} must have {size} features in its last axis, got shape "
                             f"{arr.shape}")
        return np.ascontiguousarray(arr if bf else arr.transpose(1, 0, 2))   # (B, T, H)

    def forward(self, keys, query=None, lengths=None, *, training=None):
        """Context and attention weights of `query` (or the learned query) over `keys`.

        keys (T, B, key_size); query (Tq, B, query_size) or None; lengths (B,) or None.
        Returns ``(context, weights)``: (B, key_size) and (B, T) without a query,
        (Tq, B, key_size) and (Tq, B, T) with one (batch-first: B leads)."""
        training = self._is_training(training)
        K = self._sequence("keys", keys, self.key_size)                 # (B, T, H)
        B, T, H = K.shape
        if T == 0:
            raise ValueError("keys must have at least one time step")
        lengths = _prepare_lengths(lengths, T, B)
        if query is None:
            if not self.learned_query:
                raise ValueError("this Attention has no learned query (learned_query=False): "
                                 "pass query=")
            q = np.broadcast_to(self._params["query"], (B, 1, self.query_size))
        else:
            q = self._sequence("query", query, self.query_size)          # (B, Tq, Q)
            if q.shape[0] != B:
                raise ValueError(f"query must have the keys' batch size {B}, got "
                                 f"{q.shape[0]}")
        valid = None if lengths is None else (np.arange(T)[None, :] < lengths[:, None])
        s, aux = self._scores(q, K)                                     # (B, Tq, T)
        if valid is not None:
            s = np.where(valid[:, None, :], s, -np.inf)
        s = s - s.max(axis=2, keepdims=True)
        e = np.exp(s)
        a = e / e.sum(axis=2, keepdims=True)                           # padded: exactly 0
        ctx = np.matmul(a, K)                                           # (B, Tq, H)
        self._cache = (K, q, query is not None, a, aux) if training else None
        if query is None:
            return ctx[:, 0], a[:, 0]
        if self.layout_batch_first:
            return ctx, a
        return ctx.transpose(1, 0, 2), a.transpose(1, 0, 2)

    def _scores(self, q, K):
        """Raw scores (B, Tq, T) and what their backward needs."""
        if self.score == "dot":
            s, aux = np.matmul(q, K.transpose(0, 2, 1)), None
        elif self.score == "general":
            u = np.matmul(q, self._params["weight"])                    # (B, Tq, H)
            s, aux = np.matmul(u, K.transpose(0, 2, 1)), u
        else:
            kw = np.matmul(K, self._params["weight_key"].T)             # (B, T, A)
            qw = np.matmul(q, self._params["weight_query"].T)           # (B, Tq, A)
            z = np.tanh(qw[:, :, None, :] + kw[:, None, :, :])          # (B, Tq, T, A)
            s, aux = np.matmul(z, self._params["v"]), z
        if self.scale:
            s = s * (1.0 / np.sqrt(self.key_size))
        return s, aux

    # -- backward --------------------------------------------------------------------------
    def backward(self, d_context, d_weights=None):
        """Gradients of the last training-mode forward: d_context (and optionally d_weights)
        in the shapes forward returned.  Returns d_keys, or (d_keys, d_query) when the
        forward had a query; parameter gradients are added into ``grads``."""
        if self._cache is None:
            raise no_cache_error(self)
        K, q, had_query, a, aux = self._cache
        self._cache = None
        B, T, H = K.shape
        Tq = q.shape[1]
        dc = self._grad_input("d_context", d_context, (B, Tq, H), had_query)
        da = np.matmul(dc, K.transpose(0, 2, 1))                        # (B, Tq, T)
        if d_weights is not None:
            da = da + self._grad_input("d_weights", d_weights, (B, Tq, T), had_query)
        dK = np.matmul(a.transpose(0, 2, 1), dc)                        # the values' path
        ds = a * (da - (a * da).sum(axis=2, keepdims=True))             # softmax backward
        if self.scale:
            ds = ds * (1.0 / np.sqrt(self.key_size))
        g = self._grads
        if self.score == "dot":
            dK += np.matmul(ds.transpose(0, 2, 1), q)
            dq = np.matmul(ds, K)
        elif self.score == "general":
            u = aux
            dK += np.matmul(ds.transpose(0, 2, 1), u)
            du = np.matmul(ds, K)                                       # (B, Tq, H)
            g["weight"] += np.einsum("btq,bth->qh", q, du)
            dq = np.matmul(du, self._params["weight"].T)
        else:
            z = aux
            g["v"] += np.einsum("bqt,bqta->a", ds, z)
            dz = ds[..., None] * self._params["v"] * (1 - z * z)       # (B, Tq, T, A)
            dkw = dz.sum(axis=1)                                        # (B, T, A)
            dqw = dz.sum(axis=2)                                        # (B, Tq, A)
            g["weight_key"] += np.einsum("bta,bth->ah", dkw, K)
            g["weight_query"] += np.einsum("bqa,bqj->aj", dqw, q)
            dK += np.matmul(dkw, self._params["weight_key"])
            dq = np.matmul(dqw, self._params["weight_query"])
        dK = dK.astype(self.dtype, copy=False)
        if not had_query:
            g["query"] += dq.sum(axis=(0, 1))
            return self._finish(dK)
        return self._finish(dK), self._finish(dq.astype(self.dtype, copy=False))

    def _grad_input(self, name, value, shape, had_query):
        B, Tq, last = shape
        arr = float_input(name, value, self.dtype)
        if not had_query:
            want = (B, last)
            if arr.shape != want:
                raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
            return arr[:, None, :]
        want = (B, Tq, last) if self.layout_batch_first else (Tq, B, last)
        if arr.shape != want:
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
        return arr if self.layout_batch_first else arr.transpose(1, 0, 2)

    def _finish(self, d):                   # (B, T, .) -> the caller's layout
        return d if self.layout_batch_first else np.ascontiguousarray(d.transpose(1, 0, 2))

    # -- Sequential protocol ---------------------------------------------------------------
    def chain_forward(self, x, lengths):
        return self.forward(x, lengths=lengths)[0]

    def chain_backward(self, dy):
        return self.backward(dy)

    def output_shape(self, input_shape):
        return (input_shape[0] if self.layout_batch_first else input_shape[1], self.key_size)

    def get_config(self):
        """Constructor arguments (see ``Layer.get_config``)."""
        cfg = {"key_size": self.key_size, "query_size": self.query_size, "score": self.score,
               "scale": self.scale, "learned_query": self.learned_query,
               "batch_first": self.batch_first, "dtype": self.dtype.name}
        if self.score == "additive":
            cfg["attention_size"] = self.attention_size
        return cfg
