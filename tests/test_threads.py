"""Thread safety and GIL release of the compiled kernels (through ``fastrnn.functional``).

* correctness under concurrency: several Python threads run forward + backward of
  different cells / dtypes / directions / lengths (some sharing the same input arrays)
  repeatedly and at the same time; every result must be bit-identical to the same call
  made serially, and the shared inputs must stay unmodified;
* the GIL is released during the kernels: while a helper thread runs a long forward
  (or backward), the main thread keeps executing Python bytecode.  The main thread's
  progress is measured as iterations of a tiny Python loop per second of the kernel's
  wall time, relative to the same measurement while the helper thread merely sleeps
  (``time.sleep`` certainly releases the GIL).  A negative control (a helper that holds
  the GIL in one long C call) shows that the harness does detect a GIL holder.  The
  thresholds are generous and each measurement is retried a few times, so a noisy shared
  2-core machine (where the kernel's BLAS threads also compete for the cores) does not
  make the test flaky, while a kernel that held the GIL would fail every attempt;
* a cache made by a forward in one thread can be consumed by a backward in another.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastrnn import functional as F
import problems

CELLS = problems.GATES


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def make_problem(cell, seed, shape, dtype=np.float64, scale=0.3):
    return problems.make_problem(cell, seed, shape, dtype=dtype, scale=scale)


def forward(cell, p, lengths=None, reverse=False, training=True):
    """Returns (y, hT, cT or None, cache)."""
    return problems.forward(F, cell, p, lengths, reverse, training=training)


def backward(cell, cache, dy, dhT, dcT=None, **kw):
    return problems.backward(F, cell, cache, dy, dhT, dcT, **kw)


class Job:
    """One forward + backward problem; run() returns a flat list of every result array."""

    def __init__(self, cell, seed, shape, dtype, lengths, reverse, p=None):
        self.cell, self.lengths, self.reverse = cell, lengths, reverse
        self.p = make_problem(cell, seed, shape, dtype) if p is None else p
        t, b, _, h = shape
        rng = np.random.default_rng(seed + 1)
        self.dy = rng.standard_normal((t, b, h)).astype(dtype)
        self.dhT = rng.standard_normal((b, h)).astype(dtype)
        self.dcT = rng.standard_normal((b, h)).astype(dtype) if cell == "lstm" else None

    def run(self):
        y, hT, cT, cache = forward(self.cell, self.p, self.lengths, self.reverse)
        g = backward(self.cell, cache, self.dy, self.dhT, self.dcT)
        yi, hTi, cTi, _ = forward(self.cell, self.p, self.lengths, self.reverse,
                                  training=False)
        return [a for a in (y, hT, cT, *g, yi, hTi, cTi) if a is not None]


def assert_identical(got, expected, what=""):
    assert len(got) == len(expected)
    for k, (a, e) in enumerate(zip(got, expected)):
        assert a.dtype == e.dtype and a.shape == e.shape, (what, k)
        np.testing.assert_array_equal(a, e, err_msg=f"{what} result #{k}")


def _jobs():
    # mostly small problems (single-threaded BLAS calls: the test stays fast on a loaded
    # machine) plus two larger ones on shared inputs whose GEMMs use BLAS's own threads
    small, large = (12, 8, 10, 20), (30, 16, 24, 48)
    rng = np.random.default_rng(0)
    len_small = rng.integers(1, small[0] + 1, size=small[1])
    len_small[:2] = [1, small[0]]
    len_large = rng.integers(1, large[0] + 1, size=large[1])
    len_large[:2] = [large[0], 1]
    shared = make_problem("lstm", 99, large)        # read by two threads at once
    return [
        Job("lstm", 1, small, np.float32, len_small, False),
        Job("gru", 2, small, np.float64, None, True),
        Job("rnn_tanh", 3, small, np.float32, None, False),
        Job("gru_noreset", 4, small, np.float64, len_small, True),
        Job("rnn_relu", 5, small, np.float64, len_small, False),
        Job("lstm", 6, large, np.float64, len_large, True, p=shared),
        Job("lstm", 7, large, np.float64, None, False, p=shared),
        Job("gru", 8, small, np.float32, len_small, False),
    ]


# ----------------------------------------------------------------------------------------
# (a) concurrent calls give the serial results
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_threads", [4])
def test_concurrent_calls_match_serial(n_threads):
    jobs = _jobs()
    frozen = [{k: v.copy() for k, v in j.p.items()} for j in jobs]
    expected = [j.run() for j in jobs]              # serial, in the main thread
    repeats = 4
    barrier = threading.Barrier(n_threads)

    def worker(tid):
        # each thread works through the jobs in its own rotation, so different cells run
        # side by side; the barrier makes the threads start together
        barrier.wait()
        out = []
        for r in range(repeats):
            for k in range(len(jobs)):
                idx = (k + tid * 2 + r) % len(jobs)
                out.append((idx, jobs[idx].run()))
        return out

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        results = list(pool.map(worker, range(n_threads)))
    assert sum(len(r) for r in results) == n_threads * repeats * len(jobs)
    for tid, res in enumerate(results):
        for idx, got in res:
            assert_identical(got, expected[idx], f"thread {tid}, job {idx} "
                             f"({jobs[idx].cell})")
    for j, fz in zip(jobs, frozen):
        for k, v in fz.items():
            np.testing.assert_array_equal(j.p[k], v, err_msg=f"input {k} was modified")


def test_many_threads_same_call():
    """Eight threads making the very same call (same arrays) at the same time."""
    job = _jobs()[0]
    expected = job.run()
    barrier = threading.Barrier(8)

    def worker(_):
        barrier.wait()
        return [job.run() for _ in range(4)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for res in pool.map(worker, range(8)):
            for got in res:
                assert_identical(got, expected, "same call")


# ----------------------------------------------------------------------------------------
# (b) the GIL is released while a kernel runs
# ----------------------------------------------------------------------------------------

def _main_thread_progress(fn):
    """Run fn() in a helper thread while the main thread spins a Python loop.

    Returns (main-thread loop iterations per second of fn's wall time, fn's wall time).
    Only the iterations made while fn is running are counted."""
    state = [0]                                     # 0 not started, 1 running, 2 done
    wall = []
    error = []

    def helper():
        t0 = time.perf_counter()
        state[0] = 1
        try:
            fn()
        except BaseException as exc:                # surfaced in the main thread
            error.append(exc)
        wall.append(time.perf_counter() - t0)
        state[0] = 2

    th = threading.Thread(target=helper)
    th.start()
    while state[0] == 0:
        time.sleep(0.0005)
    n = 0
    while state[0] == 1:
        n += 1
    th.join()
    if error:
        raise error[0]
    return n / wall[0], wall[0]


def _relative_progress(fn, idle_seconds):
    """Main-thread progress while fn runs, relative to while a helper just sleeps."""
    idle_rate, _ = _main_thread_progress(lambda: time.sleep(idle_seconds))
    rate, wall = _main_thread_progress(fn)
    return rate / idle_rate, wall


def _gil_holder():
    """~0.1-0.5 s in ONE C call that never releases the GIL (builtin sum over a range)."""
    sum(range(10_000_000))


THRESHOLD = 0.25     # main-thread progress during a kernel, relative to idle


def _assert_releases_gil(fn, attempts=3, threshold=THRESHOLD, setup=None):
    """fn() (or fn(setup()), setup run in the main thread before each attempt) must let
    the main thread progress; up to `attempts` tries, the first good one passes."""
    ratios = []
    for _ in range(attempts):
        if setup is not None:
            arg = setup()
            call = lambda: fn(arg)                  # noqa: E731
        else:
            call = fn
        ratio, wall = _relative_progress(call, idle_seconds=0.1)
        ratios.append((round(ratio, 3), round(wall, 3)))
        if ratio > threshold:
            return ratios
    pytest.fail(f"the main thread made little progress while the kernel ran (progress "
                f"relative to idle, kernel wall time in s): {ratios}; expected a ratio "
                f"> {threshold}: the kernel seems to hold the GIL")


def test_harness_detects_a_gil_holder():
    """Negative control: a call that keeps the GIL fails the criterion the kernels must
    pass (typically its ratio is ~0.01-0.05: the main thread only runs before and after)."""
    ratios = []
    for _ in range(3):                  # load can inflate one measurement: retry
        ratio, wall = _relative_progress(_gil_holder, idle_seconds=0.1)
        ratios.append((round(ratio, 3), round(wall, 3)))
        if ratio < THRESHOLD:
            return
    pytest.fail(f"the harness did not detect a GIL holder: {ratios}")


# Long sequences of small steps: a few hundred ms per call, and per-step GEMMs small enough
# for BLAS to run them on the calling thread.  (With B=32, H=256 BLAS would start its own
# threads, which on a loaded 2-core machine makes every step wait for descheduled
# helpers: slow and noisy, without making the GIL test any stronger.)
LONG = (4000, 8, 16, 64)            # T, B, I, H


def test_forward_releases_gil():
    p = make_problem("lstm", 50, LONG, np.float32, scale=0.05)

    def fn():
        forward("lstm", p, training=False)
    _assert_releases_gil(fn)


def test_training_forward_and_backward_release_gil():
    p = make_problem("gru", 51, LONG, np.float32, scale=0.05)
    dy = np.ones(LONG[:2] + LONG[3:], np.float32)

    def fwd():
        forward("gru", p, reverse=True)
    _assert_releases_gil(fwd)

    def bwd(cache):
        backward("gru", cache, dy, None)
    _assert_releases_gil(bwd, setup=lambda: forward("gru", p, reverse=True)[3])


# ----------------------------------------------------------------------------------------
# (c) caches cross threads
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", list(CELLS))
def test_cache_used_in_another_thread(cell):
    shape = (12, 6, 5, 8)
    lengths = np.array([12, 3, 1, 7, 12, 5])
    job = Job(cell, 60, shape, np.float64, lengths, True)
    y, hT, cT, cache = forward(cell, job.p, lengths, True)
    expected = list(backward(cell, cache, job.dy, job.dhT, job.dcT))

    with ThreadPoolExecutor(max_workers=2) as pool:
        # forward in the main thread, backward in a worker
        cache = forward(cell, job.p, lengths, True)[3]
        got = pool.submit(backward, cell, cache, job.dy, job.dhT, job.dcT).result()
        assert_identical([a for a in got if a is not None],
                         [a for a in expected if a is not None], "main -> worker")
        # forward in a worker, backward in the main thread
        out = pool.submit(forward, cell, job.p, lengths, True).result()
        for a, e in zip(out[:3], (y, hT, cT)):
            if e is not None:
                np.testing.assert_array_equal(a, e)
        got = backward(cell, out[3], job.dy, job.dhT, job.dcT)
        assert_identical([a for a in got if a is not None],
                         [a for a in expected if a is not None], "worker -> main")
        # forward in one worker, backward in another, several caches at once
        futures = [pool.submit(forward, cell, job.p, lengths, True) for _ in range(4)]
        caches = [f.result()[3] for f in futures]
        futures = [pool.submit(backward, cell, c, job.dy, job.dhT, job.dcT) for c in caches]
        for f in futures:
            assert_identical([a for a in f.result() if a is not None],
                             [a for a in expected if a is not None], "worker -> worker")


# ----------------------------------------------------------------------------------------
# the engine's own threads: results do not depend on how many there are
# ----------------------------------------------------------------------------------------

@pytest.fixture
def restore_num_threads():
    import fastrnn
    from fastrnn.engine.threads import using
    with using(fastrnn.get_num_threads()) as _:
        fastrnn.set_num_threads(None)         # the default mode, restored afterwards
        yield fastrnn


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_results_do_not_depend_on_thread_count_or_scheme(cell, dtype, restore_num_threads,
                                                         monkeypatch):
    """Bit-identical results on 1 thread and with 2 and 3 threads in each parallel scheme
    (rows split: 9 rows as 4+5 and 3+3+3; hidden units split), for a shape with several
    hidden-unit blocks (H = 40: 3 blocks of 16 floats / 5 of 8 doubles, the last one
    partial), lengths, per-step gradient clipping and both the training and the inference
    path."""
    from fastrnn import functional
    fastrnn = restore_num_threads
    shape = (7, 9, 5, 40)
    lengths = np.array([7, 1, 3, 7, 5, 2, 6, 4, 7])
    rng = np.random.default_rng(3)
    dy = rng.standard_normal(shape[:2] + (shape[3],)).astype(dtype)
    results = {}
    plans = [(1, "units"), (1, "rows"), (2, "units"), (3, "units"), (2, "rows"), (3, "rows")]
    if cell in ("lstm", "gru"):     # and with the input projection inside the steps, or not
        plans = [plan + (fused,) for plan in plans for fused in (False, True)]
    for plan in plans:
        n, scheme = plan[:2]
        # the plan as given, whatever the cost model would choose for this small problem
        monkeypatch.setattr(functional, "_force_plan",
                            lambda x, w, threads, rows=scheme == "rows": (threads, rows))
        monkeypatch.setattr(functional, "_force_fused", plan[2] if len(plan) > 2 else None)
        fastrnn.set_num_threads(n)
        out = []
        for reverse in (False, True):
            p = make_problem(cell, 11, shape, dtype)
            y, hT, cT, cache = forward(cell, p, lengths=lengths, reverse=reverse)
            out += [y, hT, cT] + list(backward(cell, cache, dy, None, None))
            cache = forward(cell, p, lengths=lengths, reverse=reverse)[3]
            out += list(backward(cell, cache, dy * 5, None, None, clip_hidden_grad=0.3))
            out += list(forward(cell, p, lengths=lengths, reverse=reverse, training=False)[:3])
        results[plan] = [a for a in out if a is not None]
    for plan in plans:
        fused = plan[2:] == (True,)
        # the projection inside the steps sums in another order than BLAS: its results are
        # compared with one thread's that also have it
        assert_identical(results[plan], results[plans[int(fused)]], f"{plan} vs one thread")
    if cell in ("lstm", "gru"):
        for a, b in zip(results[plans[1]], results[plans[0]]):
            np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                       atol=1e-5 if dtype == np.float32 else 1e-13)


def test_set_num_threads_validates(restore_num_threads):
    fastrnn = restore_num_threads
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            fastrnn.set_num_threads(bad)
    fastrnn.set_num_threads(3)
    assert fastrnn.get_num_threads() == 3
    fastrnn.set_num_threads(None)                   # back to the default


class _FakeStat:
    """/proc/stat and process time as a test drives them: `others` CPUs busy elsewhere."""

    def __init__(self, monkeypatch, threads_mod, others):
        self.t, self.busy, self.ours, self.others = 0.0, 0.0, 0.0, others
        mon = threads_mod._monitor
        monkeypatch.setattr(mon, "_sample", lambda: (self.t, self.busy, self.ours))
        monkeypatch.setattr(mon, "clock", lambda: self.t)
        monkeypatch.setattr(mon, "last", mon._sample())
        monkeypatch.setattr(mon, "others", 0.0)

    def advance(self, seconds, ours_busy=0.0):
        self.t += seconds
        self.ours += ours_busy * seconds
        self.busy += (self.others + ours_busy) * seconds


def test_default_thread_count_follows_the_free_cpus(restore_num_threads, monkeypatch):
    from fastrnn.engine import threads as _threads
    monkeypatch.setattr(_threads, "_cpus", [0, 1])
    monkeypatch.setattr(_threads, "_num_threads", 2)
    fake = _FakeStat(monkeypatch, _threads, others=0.0)
    fake.advance(0.1, ours_busy=2.0)                # our own work does not count
    assert _threads.threads_now() == 2
    fake.others = 1.0                               # a busy loop appears
    fake.advance(0.1, ours_busy=1.0)
    assert _threads.threads_now() == 1
    fake.advance(0.01)                              # no new sample within 50 ms
    assert _threads.threads_now() == 1
    fake.others = 0.2                               # it ends
    fake.advance(0.1, ours_busy=1.0)
    assert _threads.threads_now() == 2
    fake.others = 5.0                               # never fewer than one
    fake.advance(0.1)
    assert _threads.threads_now() == 1
    with _threads.using(2):                         # a fixed count is not adapted
        assert _threads.threads_now() == 2
    assert _threads.threads_now() == 1


def test_cpu_monitor_reads_this_machine():
    from fastrnn.engine import threads as _threads
    mon = _threads._CpuMonitor(_threads._cpus)
    sample = mon._sample()
    if sample is None:
        pytest.skip("no /proc/stat here")
    t, busy, ours = sample
    assert busy >= 0 and ours >= 0
    assert mon.busy_elsewhere() >= 0.0


# ----------------------------------------------------------------------------------------
# the workspace pool (large buffers reused across calls)

def test_workspace_reuse_gives_identical_results_and_no_aliasing():
    from fastrnn.engine import workspace as _workspace
    rng = np.random.default_rng(0)
    T_, B_, I_, H_ = 40, 16, 8, 64
    x = rng.standard_normal((T_, B_, I_)).astype(np.float32)
    w_ih = (rng.standard_normal((4 * H_, I_)) * 0.1).astype(np.float32)
    w_hh = (rng.standard_normal((4 * H_, H_)) * 0.1).astype(np.float32)
    dy = rng.standard_normal((T_, B_, H_)).astype(np.float32)
    _workspace.clear()
    y1, h1, c1, cache1 = F.lstm_forward(x, None, None, w_ih, w_hh, None, None)
    g1 = F.lstm_backward(dy, None, None, cache1)
    assert _workspace.held_bytes() > 0                    # the cache's buffers came back
    # a second pair reuses them; two live caches at once must not share buffers
    y2, _, _, cache2 = F.lstm_forward(x, None, None, w_ih, w_hh, None, None)
    y3, _, _, cache3 = F.lstm_forward(x * 0.5, None, None, w_ih, w_hh, None, None)
    assert not any(a is b for a in cache2.saved for b in cache3.saved)
    g2 = F.lstm_backward(dy, None, None, cache2)
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(g1, g2):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    F.lstm_backward(dy, None, None, cache3)
    _workspace.clear()
    assert _workspace.held_bytes() == 0


def test_workspace_keeps_out_arrays_that_are_still_referenced():
    from fastrnn.engine import workspace as _workspace
    _workspace.clear()
    kept = np.empty(1 << 16, np.float64)
    extra = kept                                          # noqa: F841 (a second reference)
    _workspace.release((kept,), extra_refs=0)
    assert _workspace.held_bytes() == 0
    view = np.empty(1 << 17, np.float64)[::2]
    _workspace.release((view,))
    assert _workspace.held_bytes() == 0
    _workspace.clear()


def test_plan_follows_shape_and_cache(monkeypatch):
    """The parallel scheme from the cost model (functional._plan), with a 2 MiB L2."""
    from fastrnn import functional
    from fastrnn.engine import cpu as _cpu
    monkeypatch.setattr(_cpu, "_l2_bytes", 2 << 20)

    def plan(B, G, H, n=2, dtype=np.float32):
        return functional._plan(np.zeros((5, B, 3), dtype), np.zeros((G * H, H), dtype), n)

    assert plan(8, 4, 64, n=1) == (1, True)             # one thread: the rows code path
    assert plan(8, 4, 64) == (2, True)                  # 64 KiB weight: rows, no barrier
    assert plan(2, 3, 128) == (2, True)                 # 192 KiB: one row each is enough
    assert plan(8, 4, 256) == (2, False)                # 1 MiB weight, 4 rows: units
    assert plan(64, 4, 256) == (2, True)                # ... 32 rows a thread: rows
    assert plan(64, 4, 256, dtype=np.float64) == (2, False)   # 2 MiB, 32 < 64 rows
    assert plan(1, 1, 64) == (1, False)                 # batch 1, 16 KiB: one thread
    assert plan(1, 4, 256) == (2, False)                # batch 1, 1 MiB: units
    monkeypatch.setattr(_cpu, "_l2_bytes", 256 << 10)   # a small cache: rows need more rows
    assert plan(8, 4, 64) == (2, True)
    assert plan(8, 4, 128) == (2, False)


def test_engine_threads_gives_the_set_count_to_a_lone_call():
    from fastrnn.engine import threads as _threads
    with _threads.using(2):
        with _threads.engine_threads() as n:
            assert n == 2
