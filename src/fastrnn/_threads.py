"""The engine's thread count.

Each forward/backward call splits its work between up to `get_num_threads()` threads (OpenMP
inside the kernels).  While any engine call runs, SciPy's BLAS (which the kernels call for
their large products, in fixed blocks spread over the kernel threads) is set to one thread,
and its previous setting is restored when the last call ends: BLAS worker threads would
otherwise compete with the kernel threads for the cores.  When several Python threads call
the engine at once, every call after the first runs single-threaded, so the machine is not
oversubscribed.
"""
import os
import threading
from fastrnn._blas import get_blas_threads, set_blas_threads

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
_saved_blas_threads = None
_blas_users = 0


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


class engine_threads:
    """Context manager giving the threads for one engine call: all of them if no other call
    is running, else one.  blas=False for calls that make no BLAS call (streaming steps):
    they leave the BLAS thread count alone."""

    __slots__ = ("blas", "n")

    def __init__(self, blas=True):
        self.blas = blas

    def __enter__(self):
        global _active, _saved_blas_threads, _blas_users
        with _lock:
            self.n = _num_threads if _active == 0 else 1
            _active += 1
            if self.blas:
                if _blas_users == 0:
                    _saved_blas_threads = get_blas_threads()
                    if _saved_blas_threads not in (None, 1):
                        set_blas_threads(1)
                _blas_users += 1
        return self.n

    def __exit__(self, *exc):
        global _active, _blas_users
        with _lock:
            _active -= 1
            if self.blas:
                _blas_users -= 1
                if _blas_users == 0 and _saved_blas_threads not in (None, 1):
                    set_blas_threads(_saved_blas_threads)
        return False
