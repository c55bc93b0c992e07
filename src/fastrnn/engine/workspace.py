"""A small pool of large work buffers, reused across kernel calls.

Fresh large arrays cost a page fault per 4 KiB page on first touch (about 1.5 us each on this
project's VM): a training forward of an LSTM at B=32, T=100, H=64 spent half its time
faulting in its 6 MB of saved gates and states.  The kernels take such buffers from here, and
hand them back when they are done with them (a training cache once its backward has run;
inference temporaries at the end of the call).  Only arrays that own their memory and that
nothing else references are kept, up to ``FASTRNN_WORKSPACE_MB`` MiB in all (default 256;
0 turns the pool off).  ``clear()`` empties it.
"""
import os
import sys
import threading

import numpy as np

_MIN_BYTES = 1 << 16           # smaller arrays come from malloc's own free lists cheaply
_lock = threading.Lock()
_free = {}                     # (shape, dtype.str) -> [arrays]
_held = 0


def _limit():
    try:
        return max(0, int(float(os.environ.get("FASTRNN_WORKSPACE_MB", "256")) * (1 << 20)))
    except ValueError:
        return 256 << 20


_LIMIT = _limit()


def empty(shape, dtype):
    """An uninitialised array of `shape` and `dtype`, from the pool when one is free."""
    global _held
    dtype = np.dtype(dtype)
    key = (tuple(shape), dtype.str)
    with _lock:
        bucket = _free.get(key)
        if bucket:
            arr = bucket.pop()
            _held -= arr.nbytes
            return arr
    return np.empty(shape, dtype)


def release(arrays, extra_refs=0):
    """Give arrays back to the pool.  An array still referenced elsewhere (beyond the caller's
    `extra_refs` references) is left alone."""
    global _held
    if not _LIMIT:
        return
    for arr in arrays:
        if arr is None or arr.nbytes < _MIN_BYTES or arr.base is not None:
            continue
        # references: the loop variable, getrefcount's argument, the container, extra_refs
        if sys.getrefcount(arr) > 3 + extra_refs:
            continue
        with _lock:
            if _held + arr.nbytes > _LIMIT:
                continue
            _free.setdefault((arr.shape, arr.dtype.str), []).append(arr)
            _held += arr.nbytes


def held_bytes():
    return _held


def clear():
    """Drop every pooled buffer (the memory goes back to the allocator)."""
    global _held
    with _lock:
        _free.clear()
        _held = 0
