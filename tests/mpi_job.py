"""Run by tests/test_distributed.py, under ``mpiexec -n N python -m mpi4py`` or as one plain
process: trains one of the cases below, data-parallel with ``--distributed``, and writes the
final parameters (rank 0), every rank's parameter digest and the history to --out.

    python tests/mpi_job.py CASE --out DIR [--distributed] [--batch B]

The model, data and shuffle seed are the same in every process, so a distributed run with
per-rank batch B/N must end where one process with batch B does (up to rounding)."""
import argparse
import hashlib
import json
import os
import sys

import numpy as np

import fastrnn
from fastrnn import layers as L
from fastrnn.callbacks import Callback, CSVLogger
from fastrnn.data import tbptt_streams


class Threads(Callback):
    """Records the engine threads fit runs with."""

    def on_train_begin(self, logs=None):
        self.n = fastrnn.get_num_threads()


class MarkedCSV(CSVLogger):
    """A CSVLogger that leaves a mark naming the rank that opened it."""

    rank = 0

    def on_train_begin(self, logs=None):
        open(self.path + f".opened-by-{self.rank}", "w").close()
        super().on_train_begin(logs)


def classifier(dtype):
    """An LSTM classifier on ragged sequences (lengths), with clipping and a metric."""
    rng = np.random.default_rng(0)
    N, T, I = 97, 12, 3           # the last global batch: 1 sample, rank 0 gets none
    x = rng.standard_normal((N, T, I)).astype(dtype)
    lengths = rng.integers(3, T + 1, N)
    y = (x[np.arange(N), lengths - 1, 0] > 0).astype(np.int64)
    model = fastrnn.Sequential([L.LSTM(I, 8, batch_first=True, dtype=dtype, seed=1),
                                L.LastStep(batch_first=True), L.Dense(8, 2, dtype=dtype, seed=2)])
    fit = dict(x=x, y=y, lengths=lengths, loss="cross_entropy", epochs=2, seed=5,
               clip_norm=0.5, metrics=["accuracy"], validation_data=(x[:40], y[:40],
                                                                     lengths[:40]))
    return model, fit


def charlm(dtype):
    """A stateful character-level LM: each rank its streams, states carried across batches."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 6, 4 * 10 * 5 + 1)
    x, y = tbptt_streams(ids, 4, 5)
    xv, yv = tbptt_streams(ids[:81], 4, 5)
    model = fastrnn.Sequential([L.Embedding(6, 4, dtype=dtype, seed=1),
                                L.GRU(4, 6, batch_first=True, stateful=True, dtype=dtype, seed=2),
                                L.Dense(6, 6, dtype=dtype, seed=3)])
    fit = dict(x=x, y=y, loss="cross_entropy", epochs=2, metrics=["perplexity"],
               validation_data=(xv, yv), validation_batch_size=4)
    return model, fit


CASES = {"classifier": (classifier, 32), "charlm": (charlm, 4)}


def digest(model):
    h = hashlib.sha256()
    for name, p in sorted(model.parameters().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--out", required=True)
    ap.add_argument("--distributed", action="store_true")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--fail-on-rank", type=int, default=None)
    args = ap.parse_args()
    build, global_batch = CASES[args.case]
    model, fit = build(np.dtype(args.dtype))
    rank, size = 0, 1
    if args.distributed:
        from fastrnn import distributed
        ctx = distributed.init()
        rank, size = ctx.rank, ctx.size
        if args.fail_on_rank == rank:
            raise RuntimeError(f"rank {rank} fails on purpose")
    opt = fastrnn.optim.Adam(model, lr=0.05)
    x, y = fit.pop("x"), fit.pop("y")
    os.makedirs(args.out, exist_ok=True)
    threads = Threads()
    MarkedCSV.rank = rank
    log = MarkedCSV(os.path.join(args.out, "log.csv"))
    history = model.fit(x, y, optimizer=opt, batch_size=global_batch // size, verbose=0,
                        distributed=args.distributed or None, callbacks=[threads, log], **fit)
    with open(os.path.join(args.out, f"digest-{rank}.txt"), "w") as f:
        f.write(digest(model))
    if rank == 0:
        np.savez(os.path.join(args.out, "params.npz"), **model.parameters())
        with open(os.path.join(args.out, "history.json"), "w") as f:
            json.dump({"history": history.history, "steps": history.steps,
                       "threads": threads.n}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
