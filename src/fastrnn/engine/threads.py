"""The engine's thread count.

Each forward/backward call splits its work between up to `get_num_threads()` threads (OpenMP
inside the kernels): by default as many as this process's CPUs that other programs leave
free (at least one), or exactly FASTRNN_NUM_THREADS / set_num_threads(n).  While any engine call runs, SciPy's BLAS (which the kernels call for
their large products, in fixed blocks spread over the kernel threads) is set to one thread,
and its previous setting is restored when the last call ends: BLAS worker threads would
otherwise compete with the kernel threads for the cores.  When several Python threads call
the engine at once, every call after the first runs single-threaded, so the machine is not
oversubscribed.
"""
import os
import threading
import time

from fastrnn.engine.blas import get_blas_threads, set_blas_threads

__all__ = ["set_num_threads", "get_num_threads"]


def _allowed_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _env_threads():
    env = os.environ.get("FASTRNN_NUM_THREADS")
    if not env:
        return None
    try:
        n = int(env)
    except ValueError:
        raise ValueError(f"FASTRNN_NUM_THREADS must be a positive integer, got {env!r}")
    if n < 1:
        raise ValueError(f"FASTRNN_NUM_THREADS must be a positive integer, got {env!r}")
    return n


class _CpuMonitor:
    """How many of this process's CPUs other programs keep busy, from the kernel's per-CPU
    time counters (/proc/stat, the allowed CPUs only) minus this process's own CPU time,
    over the last ``interval`` seconds or more.  Where /proc/stat is missing, nobody else
    counts as busy.

    Why: the kernel threads meet at a barrier every time step, so a thread that has to share
    its core with another busy program stalls every step of every other thread (measured
    here: a training step 18 -> 110 ms beside a second process).  With a core taken, one
    thread is faster than two; with the core back, two are used again."""

    interval = 0.05

    def __init__(self, cpus):
        self.cpus = {f"cpu{c}" for c in cpus}
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.clock = time.monotonic
        self.others = 0.0
        self.last = self._sample()

    def _sample(self):
        try:
            with open("/proc/stat", "rb") as f:
                lines = f.read().split(b"\n")
        except OSError:
            return None
        busy = 0
        for line in lines:
            if not line.startswith(b"cpu") or line.startswith(b"cpu "):
                continue
            fields = line.split()
            if fields[0].decode() not in self.cpus:
                continue
            v = [int(x) for x in fields[1:9]]      # user nice system idle iowait irq softirq steal
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        return self.clock(), busy / self.tick, time.process_time()

    def busy_elsewhere(self):
        """CPUs (a float) that other programs used lately."""
        last = self.last
        if last is None:
            return 0.0
        if self.clock() - last[0] >= self.interval:
            sample = self._sample()
            if sample is not None and sample[0] > last[0]:
                wall = sample[0] - last[0]
                others = ((sample[1] - last[1]) - (sample[2] - last[2])) / wall
                self.others = max(0.0, others)
                self.last = sample
        return self.others


_lock = threading.Lock()
_cpus = _allowed_cpus()
_fixed_threads = _env_threads()          # set by FASTRNN_NUM_THREADS or set_num_threads
_num_threads = _fixed_threads or len(_cpus)
_monitor = _CpuMonitor(_cpus)
_active = 0
_saved_blas_threads = None
_blas_users = 0


def set_num_threads(n):
    """Use `n` threads per engine call (a call made while another one runs uses one).
    ``None`` restores the default: as many of this process's CPUs as other programs leave
    free, at least one (FASTRNN_NUM_THREADS, when set, is the default instead)."""
    global _num_threads, _fixed_threads
    if n is None:
        _fixed_threads = _env_threads()
        _num_threads = _fixed_threads or len(_cpus)
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    _num_threads = _fixed_threads = n


class using:
    """Context manager: `n` threads per call inside the block (None: the default), the
    previous setting restored after it (benchmarks and tests)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.saved = (_num_threads, _fixed_threads)
        set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        global _num_threads, _fixed_threads
        _num_threads, _fixed_threads = self.saved
        return False


def get_num_threads():
    """The most threads one engine call uses."""
    return _num_threads


def threads_now():
    """The threads the next engine call would use: the fixed count, or the CPUs that other
    programs leave free (see _CpuMonitor)."""
    if _fixed_threads is not None:
        return _fixed_threads
    free = len(_cpus) - _monitor.busy_elsewhere()
    return max(1, min(_num_threads, int(free + 0.5)))


class engine_threads:
    """Context manager giving the threads for one engine call: all that threads_now()
    allows if no other call is running, else one (how a call uses them is
    fastrnn.functional._plan's choice).  blas=False for calls that make no BLAS call
    (streaming steps): they leave the BLAS thread count alone."""

    __slots__ = ("blas", "n")

    def __init__(self, blas=True):
        self.blas = blas

    def __enter__(self):
        global _active, _saved_blas_threads, _blas_users
        with _lock:
            self.n = threads_now() if _active == 0 else 1
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
