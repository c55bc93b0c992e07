"""Batching helpers: pad variable-length sequences and iterate over mini-batches.

Sample-major convention (as Keras): the first axis of ``x`` and ``y`` indexes samples;
sequences are ``(T, ...)`` each, padded batches ``(B, T, ...)``."""
import numpy as np

from fastrnn.init import as_generator

__all__ = ["pad_sequences", "batches", "tbptt_streams", "stream_batch_size"]


def pad_sequences(seqs, maxlen=None, dtype=None, value=0):
    """Stack variable-length sequences (each (T_i, ...)) into a (N, T, ...) array padded at
    the end with `value`, T = max T_i (or `maxlen`, which truncates longer ones at the end).
    Returns ``(padded, lengths)``; lengths are the kept lengths (>= 1 required)."""
    if not isinstance(seqs, (list, tuple)) or not seqs:
        raise ValueError("seqs must be a non-empty list of sequences")
    arrays = [np.asarray(s) for s in seqs]
    for i, a in enumerate(arrays):
        if a.ndim < 1:
            raise ValueError(f"seqs[{i}] must be a sequence (at least 1-D), got a scalar")
        if a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"seqs[{i}] has feature shape {a.shape[1:]}, seqs[0] has "
                             f"{arrays[0].shape[1:]}")
        if len(a) == 0:
            raise ValueError(f"seqs[{i}] is empty; every sequence needs at least one step")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    if maxlen is not None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 1:
            raise ValueError(f"maxlen must be a positive int, got {maxlen!r}")
        lengths = np.minimum(lengths, maxlen)
    T = int(lengths.max())
    dtype = np.result_type(*arrays) if dtype is None else dtype
    out = np.full((len(arrays), T) + arrays[0].shape[1:], value, dtype=dtype)
    for i, (a, n) in enumerate(zip(arrays, lengths)):
        out[i, :n] = a[:n]
    return out, lengths


def _take(data, idx):
    if isinstance(data, (list, tuple)):
        return [data[i] for i in idx]
    return data[idx]


def batches(x, y=None, batch_size=32, lengths=None, shuffle=True, seed=None,
            drop_last=False):
    """Yield ``(x_batch, y_batch, lengths_batch)`` over the samples (sample-major).

    `x` (and `y`) are arrays with samples on axis 0, or lists of variable-length sequences,
    which are padded per batch (so a batch is only as long as its longest sequence) and give
    the batch's lengths.  `shuffle` draws a new order each call (`seed`: int or Generator);
    `drop_last` leaves out a final partial batch."""
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"x and y must have the same number of samples, got {n} and {len(y)}")
    if lengths is not None and len(lengths) != n:
        raise ValueError(f"lengths must have one entry per sample ({n}), got {len(lengths)}")
    order = np.arange(n)
    if shuffle:
        order = as_generator(seed).permutation(n)
    stop = n - n % batch_size if drop_last else n
    ragged_x = isinstance(x, (list, tuple))
    ragged_y = isinstance(y, (list, tuple))
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        xb, lb = _take(x, idx), None if lengths is None else np.asarray(lengths)[idx]
        if ragged_x:
            xb, lx = pad_sequences(xb)
            lb = lx if lb is None else np.minimum(lb, lx)
        yb = None if y is None else _take(y, idx)
        if ragged_y:
            yb, _ = pad_sequences(yb, maxlen=None)
        yield xb, yb, lb


def tbptt_streams(ids, batch_size, seq_len):
    """Inputs and next-step targets for stateful truncated BPTT over one long sequence.

    `ids` (N, ...) is cut into `batch_size` parallel streams, each into chunks of `seq_len`
    steps; the samples are ordered so that batch k (samples k*batch_size .. +batch_size) holds
    chunk k of every stream, which is what a stateful layer needs to carry each stream's state
    from one batch to the next (fit keeps stateful batches in order).  Returns ``(x, y)`` of
    shape (n_chunks * batch_size, seq_len, ...), y shifted one step ahead of x."""
    ids = np.asarray(ids)
    B, T = batch_size, seq_len
    per_stream = (len(ids) - 1) // B
    n_chunks = per_stream // T
    if n_chunks < 1:
        raise ValueError(f"the sequence is too short for batch_size {B} and seq_len {T}: "
                         f"need more than {B * T + 1} steps, got {len(ids)}")
    use = n_chunks * T
    x = np.stack([ids[b * per_stream: b * per_stream + use] for b in range(B)])
    y = np.stack([ids[b * per_stream + 1: b * per_stream + use + 1] for b in range(B)])
    # (B, n_chunks, T, ...) -> (n_chunks, B, T, ...) -> (n_chunks * B, T, ...)
    rest = ids.shape[1:]
    x = x.reshape((B, n_chunks, T) + rest).swapaxes(0, 1).reshape((-1, T) + rest)
    y = y.reshape((B, n_chunks, T) + rest).swapaxes(0, 1).reshape((-1, T) + rest)
    return x, y


def stream_batch_size(x, y):
    """The number of parallel streams that sample-major next-step data (x, y) are laid out
    in, as ``tbptt_streams`` makes them, or None when they are not such data.

    With B streams, each batch of B samples continues the batch before it row by row, so
    the first input of sample i + B is the last target of sample i; the smallest B for
    which that holds throughout (and that divides the number of samples) is the answer.
    ``fit``/``evaluate`` use it to refuse a stateful run whose batch size would carry each
    state into another stream."""
    if isinstance(x, (list, tuple)) or isinstance(y, (list, tuple)) or y is None:
        return None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or x.shape != y.shape or len(x) < 2:
        return None
    first, last = x[:, 0], y[:, -1]
    n = len(x)
    for B in range(1, n // 2 + 1):
        if n % B == 0 and _continues(first, last, B):
            return B
    return None


def _continues(first, last, B):
    """Does sample i + B start where sample i's targets end, for every i?  (False when
    there is no i: one batch holds everything.)"""
    return B < len(first) and np.array_equal(first[B], last[0]) \
        and np.array_equal(first[B:], last[:-B])


def check_stream_batch_size(x, y, batch_size):
    """Refuse a stateful run over tbptt_streams-style data whose batch size is not the
    number of streams (see ``stream_batch_size``)."""
    if isinstance(x, (list, tuple)) or isinstance(y, (list, tuple)) or y is None:
        return
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or x.shape != y.shape or _continues(x[:, 0], y[:, -1], batch_size):
        return
    B = stream_batch_size(x, y)
    if B is not None and B != batch_size:
        raise ValueError(
            f"the data are laid out as {B} parallel streams (as fastrnn.data.tbptt_streams("
            f"ids, {B}, seq_len) makes them) but batch_size is {batch_size}: a stateful model "
            f"would carry each stream's state into another stream; use batch_size={B}")
