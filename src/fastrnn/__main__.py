"""The fastrnn command (also: python -m fastrnn).

    fastrnn train [TASK]  train a model on a built-in task (adding, copy, sum-classify,
                        sine, charlm --text PATH) and print the final metrics
                        (--json: one JSON object on the last line)
    fastrnn demo        forward + backward of each cell on random data, checked against the
                        NumPy reference, with timings
    fastrnn bench       fastrnn vs the NumPy reference vs torch: times, GFLOP/s, % of the
                        measured GEMM rate, ratios (--stream: per-step latency;
                        --memory: peak memory; --concurrency: two Python threads vs
                        one; --json: machine-readable)
    fastrnn --version [--verbose]   version (with --verbose: BLAS, kernel level, threads, CPU)
"""
import argparse
import sys
import textwrap
import time

import numpy as np

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.bench import make_problem

def _train_step(module, cell, p):
    """One forward + backward through `module` (fastrnn.functional or fastrnn.reference)."""
    weights = (p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    if cell == "lstm":
        y, hT, cT, cache = module.lstm_forward(p["x"], p["h0"], p["c0"], *weights,
                                               lengths=p["lengths"])
        return y, module.lstm_backward(p["dy"], None, None, cache)
    forward = getattr(module, f"{cell}_forward")
    y, hT, cache = forward(p["x"], p["h0"], *weights, lengths=p["lengths"])
    return y, getattr(module, f"{cell}_backward")(p["dy"], None, cache)


def _best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cmd_demo(args):
    rng = np.random.default_rng(args.seed)
    B, T, I, H = args.batch, args.seq_len, args.input_size, args.hidden
    print(f"fastrnn {fastrnn.__version__}: forward + backward through time, float64, "
          f"(B, T, I, H) = ({B}, {T}, {I}, {H}), random per-row lengths")
    print(f"{'cell':6s} {'max |fastrnn - NumPy|':>22s} {'fastrnn ms':>11s} {'NumPy ms':>9s} "
          f"{'speed-up':>9s}")
    worst = 0.0
    for cell in ("rnn", "lstm", "gru"):
        p = make_problem(cell, B, T, I, H, np.float64, rng)
        p["lengths"] = rng.integers(1, T + 1, B)
        y_fast, g_fast = _train_step(F, cell, p)
        y_ref, g_ref = _train_step(R, cell, p)
        err = max(float(np.max(np.abs(a - b)))
                  for a, b in zip((y_fast, *g_fast), (y_ref, *g_ref)) if a is not None)
        worst = max(worst, err)
        t_fast = _best_time(lambda: _train_step(F, cell, p), args.repeat)
        t_ref = _best_time(lambda: _train_step(R, cell, p), args.repeat)
        print(f"{cell:6s} {err:22.2e} {t_fast * 1e3:11.2f} {t_ref * 1e3:9.2f} "
              f"{t_ref / t_fast:8.1f}x")
    ok = worst < 1e-8
    print("gradients match the NumPy reference" if ok else
          f"MISMATCH: largest difference {worst:.3e}")
    return 0 if ok else 1


class _Defaults(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS) \
                and action.option_strings:
            text += " (default: %(default)s)"
        return text


def _threads(n):
    return f"{n} thread" + ("" if n == 1 else "s")


def _positive(text):
    """argparse type: an integer >= 1 (so the subcommand's own usage is shown on error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _task_defaults(key, fmt="{}"):
    """"(default: adding 64, copy 128, ...)" for a train option whose default is per task."""
    from fastrnn import tasks
    values = {name: t.defaults.get(key) for name, t in tasks.TASKS.items()}
    if len(set(map(str, values.values()))) == 1:
        return f"(default: {fmt.format(next(iter(values.values())))})"
    return "(default: " + ", ".join(f"{n} {fmt.format(v)}" for n, v in values.items()) + ")"


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape must be B,T,I,H (four positive integers), "
                                         f"got {text!r}")
    return shape


def _names(allowed):
    def parse(text):
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}, got {text!r}")
        return names
    return parse


def _prob(text):
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    if not 0 <= p < 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return p


def _zoneout(text):
    parts = [_prob(t) for t in text.split(",")]
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected Z or Z_H,Z_C, got {text!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


def cmd_bench(args):
    import json

    from fastrnn import bench
    quiet = args.json
    out = None if quiet else sys.stdout
    result = {}
    variants = [c for c in args.cells if c in bench.VARIANTS]
    not_table = args.stream or args.word_lm or args.concurrency or args.memory
    if variants and not_table:
        raise SystemExit(f"fastrnn bench: error: --cells {','.join(variants)} is for the "
                         f"table only (not --stream, --word-lm, --concurrency, --memory)")
    plot = None
    if args.plot is not None:
        if not_table:
            raise SystemExit("fastrnn bench: error: --plot charts the table (not --stream, "
                             "--word-lm, --concurrency, --memory)")
        plot = _plot_module("fastrnn bench")
        if plot is None:
            return 2
    if args.stream:
        if not quiet:
            threads = fastrnn.get_num_threads() if args.threads is None else args.threads
            print(f"streaming: per-step latency, float32, {_threads(threads)}")
            print(bench.STREAM_HEADER)
        result["stream"] = bench.run_stream(args.cells, batch=args.batch,
                                            input_size=args.input_size, hidden=args.hidden,
                                            threads=args.threads, use_torch=not args.no_torch,
                                            budget=args.budget, out=out)
    elif args.word_lm:
        result["word_lm"] = bench.run_word_lm(threads=args.threads, use_torch=not args.no_torch,
                                              budget=args.budget, out=out)
    elif args.concurrency:
        shape = (args.shape or [(8, 50, 32, 64)])[0]
        result["concurrency"] = [
            bench.run_concurrency(cell, shape, mode, engine_threads=args.threads or 1, out=out)
            for cell in args.cells for mode in args.modes]
    elif args.memory:
        if not quiet:
            print(bench.MEMORY_HEADER)
        result["memory"] = bench.run_memory(args.cells, args.shape or
                                            bench.SHAPE_SETS[args.shapes],
                                            args.modes, threads=args.threads,
                                            use_torch=not args.no_torch, out=out)
    else:
        if not quiet:
            print("measuring the GEMM rate, then each configuration (implementations take "
                  "turns; medians) ...", file=sys.stderr)
        table = bench.run_table(args.cells, args.shape or bench.SHAPE_SETS[args.shapes],
                                args.modes,
                                threads=args.threads, use_torch=not args.no_torch,
                                use_numpy=not args.no_numpy, budget=args.budget, out=out,
                                progress=None if quiet else sys.stderr,
                                use_onnx=not args.no_onnx)
        result["table"] = table
        if args.plot is not None:
            plot.bench_chart(table["rows"], args.plot,
                             title=f"peer time / fastrnn time (> 1: fastrnn is faster), "
                                   f"float32, {_threads(table['threads'])}, "
                                   f"{table['config']['kernel_level']}")
            if not quiet:
                print(f"chart saved to {args.plot}", file=sys.stderr)
        if not quiet:
            peaks = ", ".join(f"{k} {v:.0f}" for k, v in table["gemm_peaks"].items())
            print(f"\nGEMM rate (float32 2048^3, {_threads(table['threads'])}): "
                  f"{table['gemm_peak_gflops']:.0f} GFLOP/s ({peaks}); torch "
                  f"{table['torch'] or 'not installed'}; ONNX Runtime "
                  f"{table['onnxruntime'] or 'not installed'}; kernel level "
                  f"{table['config']['kernel_level']}, BLAS core {table['config']['blas_core']}")
    if args.json:
        print(json.dumps(result, default=str))
    return 0


def _print_result(r):
    verdict = "solved" if r["solved"] else "not solved"
    cmp = ">=" if r["metric"].endswith("accuracy") else "<"
    regs = "".join(f" {k}={v}" for k, v in r.get("regularizers", {}).items())
    print(f"{r['task']}: {r['cell']} H={r['hidden']} layers={r['layers']}{regs} "
          f"seq_len={r['seq_len']}, {r['steps']} steps, {r['wall_time_s']:.1f} s")
    when = ""
    if r.get("value_epoch") is None:
        when = " (no epoch was validated)"
    elif r["value_epoch"] != r["epochs"]:
        when = (f" (measured after epoch {r['value_epoch']}; epoch {r['epochs']} was cut short "
                f"and not validated)")
    print(f"  {r['metric']} {r['value']:.4g}{when} (baseline {r['baseline']:.4g}; target "
          f"{cmp} {r['target']:.4g}: {verdict})")
    if "recall_accuracy" in r:
        print(f"  recall accuracy on the copied symbols {r['recall_accuracy']:.3f}")
    if "attention_on_marker" in r:
        print(f"  attention on the marked step: {r['attention_on_marker']:.3f} of the weight "
              f"(uniform would be {1 / r['seq_len']:.3f}); validation sequences:")
        for line in r["attention_map"].split("\n"):
            print("    " + line)
    if r.get("stop_reason"):
        print(f"  stopped: {r['stop_reason']}")
    if "sample" in r:
        print(f"  sample: {r['sample_prime']!r} -> {r['sample']!r}")
    if "saved" in r:
        print(f"  model saved to {r['saved']}")
    if "plot" in r:
        print(f"  training curves saved to {r['plot']}")
    if "attention_plot" in r:
        print(f"  attention weights saved to {r['attention_plot']}")


def cmd_train(args):
    import json

    from fastrnn import tasks
    options = {k: getattr(args, k) for k in (
        "seq_len", "cell", "hidden", "layers", "optimizer", "lr", "clip_norm", "batch_size",
        "steps", "text", "temperature", "sample", "copy_len", "layer_norm", "input_dropout",
        "recurrent_dropout", "weight_drop", "zoneout")}
    if args.task != "charlm" and args.text is not None:
        print("fastrnn train: --text is for the charlm task", file=sys.stderr)
        return 2
    if args.plot is not None:
        plot = _plot_module("fastrnn train")     # fail before training, not after
        if plot is None:
            return 2
    if args.threads is not None:
        fastrnn.set_num_threads(args.threads)
    ctx = None
    if args.distributed:
        try:
            from fastrnn import distributed
            ctx = distributed.init()
        except ImportError as exc:
            print(f"fastrnn train: {exc}", file=sys.stderr)
            return 2
    where = f"fastrnn train (rank {ctx.rank})" if ctx is not None and ctx.size > 1 \
        else "fastrnn train"
    try:
        task = tasks.get_task(args.task, **options)
        verbose = 0 if args.quiet else (2 if args.json else 1)
        result, _, history = tasks.run(task, dtype=np.dtype(args.dtype), seed=args.seed,
                                 verbose=verbose, save=args.save,
                                 stop_at_target=not args.keep_going,
                                 distributed=ctx is not None)
    except (ValueError, OSError) as exc:
        # a bad option fails alike on every rank (rank 0 says it); an OSError is this rank's
        if ctx is None or ctx.rank == 0 or isinstance(exc, OSError):
            print(f"{where}: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        if ctx is None or ctx.size == 1:
            raise
        # any other error on one rank would leave the others waiting forever: end the job
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        ctx.abort(1)
    if ctx is not None and ctx.rank != 0:
        return 0
    attention = result.pop("_attention", None)
    if args.plot is not None:
        import os
        verdict = "solved" if result["solved"] else "not solved"
        plot.training_curves(history, args.plot, baseline=result["baseline"],
                             target=result["target"], target_metric=task.target_metric,
                             title=f"fastrnn train {args.task}: {task.cell.upper()} "
                                   f"H={task.hidden}, {result['steps']} steps, {verdict}")
        result["plot"] = args.plot
        if attention is not None:
            stem, ext = os.path.splitext(args.plot)
            result["attention_plot"] = f"{stem}-attention{ext or '.png'}"
            plot.attention_map(*attention, path=result["attention_plot"],
                               title=f"attention of {task.cell.upper()} + attention pooling "
                                     f"on validation sequences (circles: the marked step)")
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print_result(result)
    return 0


def build_parser():
    from fastrnn import bench, tasks
    parser = argparse.ArgumentParser(
        prog="fastrnn", description="fastrnn: fast CPU recurrent networks. Train a model on a "
        "built-in task, check the kernels, or benchmark them against NumPy and torch.",
        epilog="Run 'fastrnn COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="with --version: also the BLAS, kernel level, threads and CPU")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    defaults = _Defaults
    t = sub.add_parser(
        "train", help="train a model on a built-in task (default: adding)",
        description=textwrap.fill(
            "Train a model on a built-in task (data generated in-process) and print the "
            "final metric against the task's baseline and target. Training stops once the "
            "target is reached (--keep-going: all --steps).", 79),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="tasks:\n" + "\n".join(f"  {n:13s} {t.summary}" for n, t in tasks.TASKS.items()))
    t.add_argument("task", nargs="?", default="adding", choices=list(tasks.TASKS),
                   help="the task (default: adding)")
    t.add_argument("--text", default=None, metavar="PATH", help="charlm: the text file")
    t.add_argument("--cell", choices=["lstm", "gru", "rnn"], default=None,
                   help="recurrent cell " + _task_defaults("cell"))
    t.add_argument("--layers", type=_positive, default=None,
                   help="stacked recurrent layers " + _task_defaults("layers"))
    t.add_argument("--hidden", type=_positive, default=None,
                   help="hidden size " + _task_defaults("hidden"))
    t.add_argument("--seq-len", type=_positive, default=None, metavar="T",
                   help="sequence length; copy: the delay " + _task_defaults("seq_len"))
    t.add_argument("--steps", type=_positive, default=None,
                   help="optimizer steps, rounded up to whole epochs "
                        + _task_defaults("steps"))
    t.add_argument("--batch-size", type=_positive, default=None,
                   help=_task_defaults("batch_size"))
    t.add_argument("--optimizer", choices=sorted(fastrnn.optim.NAMES), default=None,
                   help=_task_defaults("optimizer"))
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate " + _task_defaults("lr", "{:g}"))
    t.add_argument("--clip-norm", type=float, default=None,
                   help="global gradient-norm clipping, 0: off " + _task_defaults("clip_norm"))
    t.add_argument("--layer-norm", action="store_true", default=None,
                   help="LayerNorm LSTM / GRU (Ba et al. 2016, haste's formulation)")
    t.add_argument("--input-dropout", type=_prob, default=None, metavar="P",
                   help="variational dropout on the recurrent layer's input (one mask per "
                        "sequence)")
    t.add_argument("--recurrent-dropout", type=_prob, default=None, metavar="P",
                   help="variational dropout on h entering the recurrent product (Gal & "
                        "Ghahramani 2016)")
    t.add_argument("--weight-drop", type=_prob, default=None, metavar="P",
                   help="DropConnect on the recurrent weight, one mask per batch (AWD-LSTM)")
    t.add_argument("--zoneout", type=_zoneout, default=None, metavar="Z[,ZC]",
                   help="zoneout probability of h (and c: Z,ZC for an LSTM; Z alone: both)")
    t.add_argument("--copy-len", type=_positive, default=None,
                   help="copy: symbols to recall (default: 10)")
    t.add_argument("--temperature", type=float, default=None,
                   help="charlm: sampling temperature (default: 0.7)")
    t.add_argument("--sample", type=int, default=None,
                   help="charlm: characters to sample after training, 0: none (default: 200)")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="(default: float32)")
    t.add_argument("--threads", type=_positive, default=None,
                   help="engine threads (default: all CPUs, or FASTRNN_NUM_THREADS)")
    t.add_argument("--seed", type=int, default=0, help="(default: 0)")
    t.add_argument("--keep-going", action="store_true",
                   help="train for all --steps (default: stop once the target is reached)")
    t.add_argument("--save", default=None, metavar="PATH", help="save the trained model")
    t.add_argument("--plot", default=None, metavar="PATH",
                   help="save the run's training curves, with the task's baseline and "
                        "target, as a PNG (the attention task also saves its attention "
                        "weights as PATH-attention.png; needs pip install fastrnn[plot])")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an MPI job: mpiexec -n 2 fastrnn "
                        "train --distributed (the batch is split over the ranks; needs pip "
                        "install \"fastrnn[mpi]\")")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    t.add_argument("--json", action="store_true",
                   help="print the final metrics as one JSON object on the last line")
    t.set_defaults(func=cmd_train)

    demo = sub.add_parser("demo", help="forward/backward of each cell vs the NumPy reference",
                          formatter_class=defaults,
                          description="One forward + backward of each cell on random data "
                                      "(float64), checked against the NumPy reference, with "
                                      "timings.")
    demo.add_argument("--batch", type=_positive, default=32, metavar="B", help="batch size")
    demo.add_argument("--seq-len", type=_positive, default=50, metavar="T", help="time steps")
    demo.add_argument("--input-size", type=_positive, default=64, metavar="I",
                      help="input features")
    demo.add_argument("--hidden", type=_positive, default=128, metavar="H",
                      help="hidden size")
    demo.add_argument("--repeat", type=_positive, default=5,
                      help="timing repeats (best is shown)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="benchmark against the NumPy reference and torch",
                       formatter_class=defaults,
                       description="fastrnn vs the NumPy reference vs torch on the same data "
                                   "in one process: medians, GFLOP/s, share of the GEMM rate "
                                   "measured in the same run, speed-ups.")
    b.add_argument("--cells", type=_names(["lstm", "gru", "rnn", "peephole_lstm",
                                           "projection_lstm", *bench.REGULARIZED]),
                   default="lstm,gru,rnn",
                   help="comma-separated cells.  Variants (the table only, each timed "
                        "against fastrnn's plain cell too): peephole_lstm (and ONNX "
                        "Runtime's LSTM with peepholes), projection_lstm (torch's with "
                        "proj_size = H/2), layernorm_lstm, layernorm_gru and "
                        "{lstm,gru,rnn}_{rdrop,zoneout} (recurrent dropout p = 0.25 and "
                        "zoneout z = 0.1; torch running the same math step by step with "
                        "its own operators)")
    b.add_argument("--shape", type=_shape, action="append", metavar="B,T,I,H",
                   help="a shape to run (repeatable; default: "
                        + " ".join(",".join(map(str, sh)) for sh in bench.DEFAULT_SHAPES) + ")")
    b.add_argument("--shapes", choices=sorted(bench.SHAPE_SETS), default="standard",
                   help="the set of shapes when no --shape is given: standard (the README "
                        "table), scaling (" + " ".join(",".join(map(str, sh))
                                              for sh in bench.SCALING_SHAPES)
                        + "), or all")
    b.add_argument("--modes", type=_names(["infer", "train"]), default="infer,train",
                   help="infer (forward, no cache) and/or train (forward + backward)")
    b.add_argument("--threads", type=_positive, default=None,
                   help="engine (and torch) threads (default: all CPUs)")
    b.add_argument("--budget", type=float, default=2.0,
                   help=f"seconds of timing per configuration (at least "
                        f"{bench.MIN_ROUNDS} rounds)")
    b.add_argument("--no-torch", action="store_true", help="leave torch out")
    b.add_argument("--no-numpy", action="store_true", help="leave the NumPy reference out")
    b.add_argument("--no-onnx", action="store_true",
                   help="leave ONNX Runtime out (it runs inference when onnx and onnxruntime "
                        "are installed: pip install fastrnn[bench])")
    b.add_argument("--stream", action="store_true",
                   help="per-step latency of the step functions vs torch instead")
    b.add_argument("--batch", type=_positive, default=1, help="--stream batch size")
    b.add_argument("--input-size", type=_positive, default=64, help="--stream input size")
    b.add_argument("--hidden", type=_positive, default=256, help="--stream hidden size")
    b.add_argument("--word-lm", action="store_true",
                   help="tokens/s of a word-level language model's training step (Embedding "
                        "5000x128, LSTM 256, Dense to 5000 classes, B=32, T=35) vs torch "
                        "instead")
    b.add_argument("--memory", action="store_true",
                   help="peak memory of one call vs torch (fresh process each) instead")
    b.add_argument("--concurrency", action="store_true",
                   help="throughput of two Python threads vs one (independent calls; "
                        "--threads engine threads per call, default 1; first --shape, "
                        "default 8,50,32,64) instead")
    b.add_argument("--json", action="store_true",
                   help="print the results as one JSON object (and nothing else)")
    b.add_argument("--plot", default=None, metavar="PATH",
                   help="the table (not --stream etc.) as a chart of torch's and ONNX "
                        "Runtime's time over fastrnn's, saved as a PNG (needs pip install "
                        "fastrnn[plot])")
    b.set_defaults(func=cmd_bench)

    pl = sub.add_parser("plot", help="plot a CSVLogger file's training curves, or fastrnn "
                                     "bench --json results, as a PNG",
                        description="Plot the per-epoch loss and metrics a "
                                    "fastrnn.callbacks.CSVLogger wrote (training and "
                                    "validation on the same axes), or the table of one or "
                                    "more fastrnn bench --json files (several: the median "
                                    "ratio of the runs).")
    pl.add_argument("log", nargs="+", help="the CSV file, or the bench JSON file(s)")
    pl.add_argument("-o", "--output", default=None, metavar="PATH",
                    help="the PNG to write (default: the first file's name with .png)")
    pl.add_argument("--metrics", default=None,
                    help="comma-separated names to plot (default: all logged)")
    pl.add_argument("--title", default=None)
    pl.set_defaults(func=cmd_plot)
    return parser


def _plot_module(where):
    """fastrnn.plot with matplotlib importable, or None after saying how to install it."""
    try:
        from fastrnn import plot
        plot._pyplot()
        return plot
    except ImportError as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return None


def cmd_plot(args):
    import os
    plot = _plot_module("fastrnn plot")
    if plot is None:
        return 2
    out = args.output or os.path.splitext(args.log[0])[0] + ".png"
    bench = all(path.endswith(".json") for path in args.log)
    try:
        if bench:
            rows = plot.read_bench(args.log)
            runs = len(args.log)
            plot.bench_chart(rows, out, title=args.title or (
                "peer time / fastrnn time (> 1: fastrnn is faster)" +
                (f", median of {runs} runs" if runs > 1 else "")))
            what = f"chart of {len(rows)} configurations"
        elif len(args.log) > 1:
            raise ValueError("give one CSV log, or fastrnn bench --json files (.json)")
        else:
            from fastrnn.training import History
            history = History.from_csv(args.log[0])
            plot.training_curves(history, out,
                                 args.metrics.split(",") if args.metrics else None,
                                 title=args.title or
                                 f"training curves: {os.path.basename(args.log[0])}")
            what = f"curves of {len(history.epoch)} epochs"
    except (OSError, ValueError, KeyError) as exc:
        print(f"fastrnn plot: {exc}", file=sys.stderr)
        return 2
    print(f"{what} saved to {out}")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"fastrnn {fastrnn.__version__}")
        if args.verbose:
            fastrnn.show_config()
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
