"""The engine's thread count.

Each forward/backward call splits its work between up to `get_num_threads()` threads (OpenMP
inside the kernels; BLAS calls made by the kernels are single-threaded so the two never
compete).  When several Python threads call the engine at once, every call after the first
runs single-threaded, so the machine is not oversubscribed.
"""
import os
import threading
from contextlib import contextmanager

__all__ = ["set_num_threads", "get_num_threads"]


def _default_threads():
    env = os.environ.get("FASTRNN_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FASTRNN_NUM_THREADS must be a positive integer, got {env!r}")
        if n < 1:
            raise ValueError(f"FASTRNN_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_lock = threading.Lock()
_num_threads = _default_threads()
_active = 0


def set_num_threads(n):
    """Use at most `n` threads per engine call (default: the CPUs this process may use, or
    the FASTRNN_NUM_THREADS environment variable)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _num_threads = n


def get_num_threads():
    """The most threads one engine call uses."""
    return _num_threads


@contextmanager
def engine_threads():
    """Threads for one engine call: all of them if no other call is running, else one."""
    global _active
    with _lock:
        n = _num_threads if _active == 0 else 1
        _active += 1
    try:
        yield n
    finally:
        with _lock:
            _active -= 1
