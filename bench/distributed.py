"""Throughput of data-parallel training (fastrnn.distributed) on a built-in task's model.

    python bench/distributed.py --task adding                      # one process
    mpiexec -n 2 python -m mpi4py bench/distributed.py --task adding --distributed
    ... --weak     # the task's batch on every rank (global batch x ranks) instead of split

Trains the task's model on its data for --steps optimizer steps (no validation) and prints,
on rank 0, one JSON line: ranks, engine threads per rank, global batch, steps/s, samples/s,
the gradient's size and the median time of one allreduce of it alone (the step's
communication).  Medians over --repeat runs of the whole loop."""
import argparse
import json
import statistics
import time

import numpy as np

import fastrnn
from fastrnn import tasks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="adding", choices=sorted(tasks.TASKS))
    ap.add_argument("--text", default=None, help="charlm: the text file")
    ap.add_argument("--hidden", type=int, default=None, help="(default: the task's)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--distributed", action="store_true")
    ap.add_argument("--weak", action="store_true",
                    help="the task's batch per rank (default: split over the ranks)")
    ap.add_argument("--threads", type=int, default=None,
                    help="engine threads per rank (default: the rank's share of the CPUs)")
    args = ap.parse_args()
    if args.weak and args.task == "charlm":
        ap.error("--weak: the charlm data are laid out for the task's number of streams")
    ctx = None
    rank, size = 0, 1
    if args.distributed:
        from fastrnn import distributed
        ctx = distributed.init()
        rank, size = ctx.rank, ctx.size
    if args.threads:
        fastrnn.set_num_threads(args.threads)
    options = {"text": args.text, "hidden": args.hidden}
    task = tasks.get_task(args.task, **options)
    data = task.data(np.random.default_rng(0), np.float32)
    if args.task == "charlm":
        model = task.build(np.float32, 0, vocab_size=len(data["vocab"]))
    else:
        model = task.build(np.float32, 0)
    per_rank = task.batch_size if args.weak else task.batch_size // size
    global_batch = per_rank * size
    n = args.steps * global_batch
    x, y = data["x"], data["y"]
    reps = -(-n // len(x))
    if reps > 1:                       # enough samples for --steps steps in one epoch
        x = np.concatenate([x] * reps)
        y = np.concatenate([y] * reps)
    x, y = x[:n], y[:n]
    threads = fastrnn.get_num_threads() if (ctx is None or args.threads) \
        else ctx.threads_per_rank()
    times = []
    for _ in range(args.repeat):
        opt = fastrnn.optim.get(task.optimizer, model, lr=task.lr)
        t0 = time.perf_counter()
        model.fit(x, y, loss=task.loss, optimizer=opt, batch_size=per_rank, epochs=1,
                  clip_norm=task.clip_norm or None, shuffle=args.task != "charlm", seed=0,
                  verbose=0, distributed=ctx)
        times.append(time.perf_counter() - t0)
    wall = statistics.median(times)
    grads = sum(g.size for g in model.grads.values())
    allreduce_ms = None
    if ctx is not None:
        buf = np.zeros(grads + 5, np.float32)
        for _ in range(5):
            ctx.allreduce_(buf)
        samples = []
        for _ in range(50):
            t0 = time.perf_counter()
            ctx.allreduce_(buf)
            samples.append(time.perf_counter() - t0)
        allreduce_ms = statistics.median(samples) * 1e3
    if rank == 0:
        print(json.dumps({"task": args.task, "hidden": task.hidden, "ranks": size, "threads_per_rank": threads,
                          "global_batch": global_batch, "steps": args.steps,
                          "steps_per_s": round(args.steps / wall, 2),
                          "samples_per_s": round(args.steps * global_batch / wall, 1),
                          "parameters": grads, "gradient_bytes": grads * 4,
                          "allreduce_ms": None if allreduce_ms is None
                          else round(allreduce_ms, 3),
                          "runs": args.repeat}))


if __name__ == "__main__":
    main()
