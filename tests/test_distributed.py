"""Data-parallel training over MPI (fastrnn.distributed).

Each distributed run is a subprocess, ``mpiexec -n 2 python -m mpi4py tests/mpi_job.py``,
with a timeout; this process never imports mpi4py.MPI.  The tests skip when the extra is not
installed (pip install "fastrnn[mpi]"); .ci/run installs it."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
JOB = os.path.join(HERE, "mpi_job.py")


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and _mpiexec() is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason='needs the mpi extra: pip install '
                                                   '"fastrnn[mpi]"')
TIMEOUT = 240


def _env():
    env = dict(os.environ)
    env.pop("FASTRNN_NUM_THREADS", None)
    return env


def run_job(out, case, ranks=None, *extra, check=True):
    """The job as one process (ranks None) or under mpiexec -n ranks; returns the process."""
    cmd = [sys.executable, JOB, case, "--out", str(out), *extra]
    if ranks is not None:
        cmd = [_mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py", JOB, case,
               "--out", str(out), "--distributed", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def params(out):
    with np.load(os.path.join(out, "params.npz")) as f:
        return {k: f[k] for k in f.files}


def digests(out, ranks):
    return [open(os.path.join(out, f"digest-{r}.txt")).read() for r in range(ranks)]


def history(out):
    with open(os.path.join(out, "history.json")) as f:
        return json.load(f)


@needs_mpi
@pytest.mark.parametrize("case", ["classifier", "charlm"])
def test_two_ranks_equal_one_process_on_the_global_batch(case, tmp_path):
    """2 ranks with batch 16 (2 streams) each end where one process with batch 32 (4
    streams) does: same data order, the gradient averaged with each rank's share of the
    loss's denominator (ragged lengths in the classifier), global-norm clipping; every rank
    holds the same parameters, bit for bit; losses and metrics, validation included, are the
    global ones."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_job(one, case)
    run_job(two, case, 2)
    a, b = params(one), params(two)
    assert a.keys() == b.keys()
    err = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    assert err < 1e-12, err
    d = digests(two, 2)
    assert d[0] == d[1]
    h1, h2 = history(one), history(two)
    assert h1["steps"] == h2["steps"] > 0
    for k, v in h1["history"].items():
        np.testing.assert_allclose(h2["history"][k], v, rtol=1e-12, err_msg=k)


@needs_mpi
def test_the_same_distributed_run_twice_is_bit_identical(tmp_path):
    run_job(tmp_path / "a", "classifier", 2, "--dtype", "float32")
    run_job(tmp_path / "b", "classifier", 2, "--dtype", "float32")
    assert digests(tmp_path / "a", 2) == digests(tmp_path / "b", 2)
    assert len(set(digests(tmp_path / "a", 2))) == 1


@needs_mpi
def test_ranks_share_the_cpus_and_only_rank_0_writes(tmp_path):
    """Each of 2 ranks on this host runs its engine with its share of the CPUs; the CSV log
    is opened by rank 0 only and holds one row per epoch."""
    out = tmp_path / "job"
    run_job(out, "charlm", 2)
    cpus = len(os.sched_getaffinity(0))
    assert history(out)["threads"] == max(1, cpus // 2)
    marks = sorted(p.name for p in out.iterdir() if ".opened-by-" in p.name)
    assert marks == ["log.csv.opened-by-0"]
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 and rows[0].startswith("epoch,")


@needs_mpi
def test_one_rank_failing_ends_the_job(tmp_path):
    """Under python -m mpi4py an exception on rank 1 aborts every rank: the job ends with
    an error instead of rank 0 waiting forever in the first allreduce."""
    proc = run_job(tmp_path / "x", "classifier", 2, "--fail-on-rank", "1", check=False)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr


@needs_mpi
@pytest.mark.parametrize("task,args", [
    ("adding", ["--steps", "60", "--seq-len", "20"]),
    ("copy", ["--steps", "40", "--copy-len", "4"]),
    ("sum-classify", ["--steps", "40", "--seq-len", "20"]),
    ("sine", ["--steps", "40"]),
    ("charlm", ["--steps", "20", "--hidden", "32", "--seq-len", "20"]),
    ("attention", ["--steps", "40", "--seq-len", "20"]),
])
def test_cli_trains_every_task_distributed_like_one_process(task, args, tmp_path):
    """mpiexec -n 2 fastrnn train TASK --distributed makes the same steps as one process
    (the task's batch split over the ranks) and reaches the same validation value (float64,
    so that float32 rounding cannot flip a classification); rank 0
    alone prints the result and saves."""
    save = tmp_path / "m.fastrnn"
    if task == "charlm":
        text = tmp_path / "text.txt"
        with open(os.path.join(HERE, "..", "README.md"), encoding="utf-8") as f:
            text.write_text(f.read()[:20000], encoding="utf-8")
        args = args + ["--text", str(text)]
    base = [sys.executable, "-m", "fastrnn", "train", task, "--json", "--quiet", "--dtype",
            "float64", "--keep-going", *args]
    one = subprocess.run(base, capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert one.returncode == 0, one.stderr
    two = subprocess.run([_mpiexec(), "-n", "2", *base, "--distributed", "--save", str(save)],
                         capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert two.returncode == 0, two.stderr
    lines = [ln for ln in two.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1                      # rank 0 only
    r1, r2 = json.loads(one.stdout), json.loads(lines[0])
    assert r2["ranks"] == 2 and r2["steps"] == r1["steps"]
    np.testing.assert_allclose(r2["value"], r1["value"], rtol=1e-9)
    assert save.exists() and r2["saved"] == str(save)


@needs_mpi
def test_cli_refuses_a_batch_that_does_not_split(tmp_path):
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "fastrnn", "train",
                           "adding", "--distributed", "--batch-size", "33", "--steps", "5"],
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert proc.returncode != 0
    assert "does not split evenly over 2 ranks" in proc.stderr


def test_without_mpi4py_a_clear_error_and_nothing_else_breaks(monkeypatch):
    """fit(distributed=True) without the extra says how to install it; import fastrnn and
    ordinary training never import mpi4py."""
    import fastrnn
    from fastrnn import layers as L
    monkeypatch.setitem(sys.modules, "mpi4py", None)      # import mpi4py -> ImportError
    monkeypatch.setattr("fastrnn.distributed._context", None)
    model = fastrnn.Sequential([L.Dense(2, 1, seed=0)])
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ImportError, match=r"fastrnn\[mpi\]"):
        model.fit(x, x[:, :1], loss="mse", optimizer="sgd", distributed=True, verbose=0)
    model.fit(x, x[:, :1], loss="mse", optimizer="sgd", verbose=0)
    code = ("import sys, fastrnn, fastrnn.tasks, fastrnn.training; "
            "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_bad_distributed_argument():
    import fastrnn
    from fastrnn import layers as L
    model = fastrnn.Sequential([L.Dense(2, 1, seed=0)])
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match="distributed must be True, False or"):
        model.fit(x, x[:, :1], loss="mse", optimizer="sgd", distributed="yes", verbose=0)


def test_cli_without_mpi4py_says_how_to_install(monkeypatch, capsys):
    from fastrnn.__main__ import main
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr("fastrnn.distributed._context", None)
    assert main(["train", "adding", "--distributed", "--steps", "5"]) == 2
    assert "fastrnn[mpi]" in capsys.readouterr().err


@needs_mpi
def test_the_distributed_example_runs(tmp_path):
    script = os.path.join(HERE, "..", "examples", "distributed_classify.py")
    if not os.path.exists(script):
        pytest.skip("examples/ is not shipped with installed packages")
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "mpi4py", script,
                           "--quick"], capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=tmp_path, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("ranks: 2") == 1
    acc = float(proc.stdout.split("validation accuracy")[1].split()[0])
    assert acc > 0.8
    assert (tmp_path / "distributed_classifier.fastrnn").exists()


@needs_mpi
def test_ctrl_c_stops_every_rank_at_the_same_step():
    """Ctrl-C to mpiexec reaches every rank; the flag rides in the step's allreduce, so all
    ranks stop after the same step and rank 0 reports it (exit status 0, no rank left
    waiting)."""
    import signal
    proc = subprocess.Popen([_mpiexec(), "-n", "2", sys.executable, "-m", "fastrnn", "train",
                             "adding", "--distributed", "--keep-going", "--steps", "100000",
                             "--seq-len", "20", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(),
                            # a job started with SIGINT ignored (nohup, CI) passes that on
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while True:                      # wait for the first epoch's line (rank 0's)
            line = proc.stderr.readline()
            assert line, "the job ended before training"
            if line.startswith("Epoch 1/"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["stop_reason"].startswith("interrupted (Ctrl-C)")
    assert result["steps"] < 100000
    assert err.count("Ctrl-C: stopping after this step") == 1
