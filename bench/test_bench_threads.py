"""Overlap of engine calls made from two Python threads (the kernels release the GIL):
the same total work done by one thread and by two threads, one engine thread per call.

    pytest bench/test_bench_threads.py --benchmark-only
The two-thread group's time should be about half the one-thread group's (2 cores).
"""
import threading

import pytest

from conftest import make_problem

import fastrnn
from fastrnn import functional as F

CALLS = 200


@pytest.fixture
def single_engine_thread():
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(1)
    yield
    fastrnn.set_num_threads(before)


@pytest.mark.parametrize("python_threads", [1, 2])
def test_lstm_forward_overlap(benchmark, python_threads, single_engine_thread):
    problems = [make_problem("lstm", 8, 50, 32, 64, seed=s) for s in range(2)]

    def calls(p, n):
        for _ in range(n):
            F.lstm_forward(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"],
                           p["b_hh"], training=False)

    def run():
        if python_threads == 1:
            calls(problems[0], 2 * CALLS)
            return
        threads = [threading.Thread(target=calls, args=(p, CALLS)) for p in problems]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    benchmark.group = f"2 x {CALLS} LSTM forwards (8, 50, 32, 64), 1 engine thread per call"
    benchmark.extra_info.update(python_threads=python_threads)
    run()
    benchmark(run)
