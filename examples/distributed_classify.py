"""Data-parallel training over MPI: every rank runs this same script.

    pip install "fastrnn[mpi]"
    mpiexec -n 2 python -m mpi4py examples/distributed_classify.py

Each rank builds the same data and model; fit(distributed=True) gives every rank rank 0's
initial weights, its slice of each global batch (16 samples per rank here), one allreduce of
the gradients a step, and the same updates, so the ranks end with the same model.  Rank 0
alone prints and saves.  (``python -m mpi4py``: an error on one rank ends the whole job.)
"""
import argparse

import numpy as np

import fastrnn
from fastrnn import distributed
from fastrnn import layers as L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a short run")
    args = ap.parse_args()
    ctx = distributed.init()
    rng = np.random.default_rng(0)                    # the same data on every rank
    N, T = (1280, 20) if args.quick else (8192, 40)
    x = rng.standard_normal((N, T, 1)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)     # is the sum positive?
    model = fastrnn.Sequential([L.LSTM(1, 32, batch_first=True, seed=0),
                                L.LastStep(batch_first=True), L.Dense(32, 2, seed=0)])
    history = model.fit(x[:-256], y[:-256], loss="cross_entropy", optimizer="adam",
                        batch_size=16, epochs=3 if args.quick else 5,
                        validation_data=(x[-256:], y[-256:]), metrics=["accuracy"], seed=0,
                        distributed=True, verbose=1 if ctx.rank == 0 else 0)
    if ctx.rank == 0:
        print(f"ranks: {ctx.size}, {ctx.threads_per_rank()} engine threads each, global batch "
              f"{16 * ctx.size}, {history.steps} steps")
        print(f"validation accuracy {history.history['val_accuracy'][-1]:.3f}")
        fastrnn.save(model, "distributed_classifier.fastrnn")


if __name__ == "__main__":
    main()
