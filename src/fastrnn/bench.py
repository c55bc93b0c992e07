"""`fastrnn bench`: fastrnn vs the NumPy reference vs torch (when installed), in one run.

Every configuration times the implementations in interleaved rounds (a, b, c, a, b, c, ...)
and reports medians, so slow drifts of a shared machine hit all of them alike.  The
machine's GEMM rate is measured in the same run (a large float32 matrix product with the
BLAS libraries in the process, the best of them), and fastrnn's rate is given as a share of
it.  FLOP counts: forward 2*T*B*G*H*(I+H); training (forward + backward including the input
gradient) three times that.
"""
import json
import statistics
import subprocess
import sys
import time

import numpy as np

import fastrnn
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.init import as_generator

# the regularized and normalized cells (fastrnn.functional's layernorm_* and the
# recurrent_mask / zoneout arguments): name -> (plain cell, what is added)
REGULARIZED = {"layernorm_lstm": ("lstm", "layer_norm"), "layernorm_gru": ("gru", "layer_norm")}
for _c in ("lstm", "gru", "rnn"):
    REGULARIZED[f"{_c}_rdrop"] = (_c, "recurrent_dropout")
    REGULARIZED[f"{_c}_zoneout"] = (_c, "zoneout")
RDROP_P, ZONEOUT_P = 0.25, 0.1      # the probabilities the bench draws its masks with

GATES = {"rnn": 1, "lstm": 4, "gru": 3, "peephole_lstm": 4, "projection_lstm": 4}
GATES.update({name: GATES[base] for name, (base, _) in REGULARIZED.items()})
# cell variants: the table also times fastrnn's plain cell on the same data (torch has the
# projection LSTM, proj_size = H/2 here; ONNX Runtime has the peephole LSTM; for the
# regularized cells torch runs the same math with its own operators, step by step)
VARIANTS = {"peephole_lstm": "lstm", "projection_lstm": "lstm"}
VARIANTS.update({name: base for name, (base, _) in REGULARIZED.items()})


def proj_size(H):
    return max(1, H // 2)
DEFAULT_SHAPES = [(8, 50, 32, 64), (64, 100, 128, 256), (128, 100, 512, 512), (1, 100, 64, 256)]
# beyond the table (--shapes all): time must grow linearly in T (100 vs 1000 steps), a wide
# layer (H = 1024), a large batch (B = 256) and a univariate time series (I = 1)
SCALING_SHAPES = [(8, 100, 32, 64), (8, 1000, 32, 64), (16, 100, 256, 1024),
                  (256, 100, 128, 256), (32, 200, 1, 128)]
SHAPE_SETS = {"standard": DEFAULT_SHAPES, "scaling": SCALING_SHAPES,
              "all": DEFAULT_SHAPES + SCALING_SHAPES}


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _onnxruntime():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def onnx_runner(cell, p, threads):
    """ONNX Runtime's operator for the same layer (inference only): a no-argument callable."""
    from fastrnn import _onnx
    B, H = p["h0"].shape
    I = p["x"].shape[2]
    peep = p["w_peep"] if cell == "peephole_lstm" else None
    cell = VARIANTS.get(cell, cell)
    model = _onnx.single_layer_model(cell, I, H, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                     w_peep=peep)
    sess = _onnx.session(model, threads)
    feeds = {"X": p["x"], "sequence_lens": np.full(B, p["x"].shape[0], np.int32),
             "initial_h": p["h0"][None]}
    if cell == "lstm":
        feeds["initial_c"] = p["c0"][None]
    return lambda: sess.run(None, feeds)


def flops(cell, B, T, I, H, mode):
    if cell == "projection_lstm":
        P = proj_size(H)
        fwd = 2.0 * T * B * (4 * H * (I + P) + P * H)
        return fwd if mode == "infer" else 3 * fwd
    fwd = 2.0 * T * B * GATES[cell] * H * (I + H)
    return fwd if mode == "infer" else 3 * fwd


def make_problem(cell, B, T, I, H, dtype=np.float32, seed=0):
    """Random inputs, PyTorch-default-scaled weights and an output gradient (seed: an int or a
    Generator)."""
    rng = as_generator(seed)
    G, k = GATES[cell], 1 / np.sqrt(H)
    p = {
        "x": rng.standard_normal((T, B, I)).astype(dtype),
        "h0": (0.1 * rng.standard_normal((B, H))).astype(dtype),
        "c0": (0.1 * rng.standard_normal((B, H))).astype(dtype),
        "w_ih": rng.uniform(-k, k, (G * H, I)).astype(dtype),
        "w_hh": rng.uniform(-k, k, (G * H, H)).astype(dtype),
        "b_ih": rng.uniform(-k, k, G * H).astype(dtype),
        "b_hh": rng.uniform(-k, k, G * H).astype(dtype),
        "dy": rng.standard_normal((T, B, H)).astype(dtype),
    }
    if cell == "peephole_lstm":
        p["w_peep"] = rng.uniform(-k, k, 3 * H).astype(dtype)
    if cell in REGULARIZED:
        base, what = REGULARIZED[cell]
        if what == "layer_norm":
            n = [G * H, G * H, G * H, G * H] + ([H, H] if base == "lstm" else [])
            p["ln"] = [((1.0 if i % 2 == 0 else 0.0) + 0.1 * rng.standard_normal(m))
                       .astype(dtype) for i, m in enumerate(n)]
        elif what == "recurrent_dropout":
            p["recurrent_mask"] = ((rng.random((B, H)) >= RDROP_P)
                                   / (1 - RDROP_P)).astype(dtype)
        else:
            p["zoneout_h"] = rng.random((T, B, H)) < ZONEOUT_P
            p["zoneout_c"] = rng.random((T, B, H)) < ZONEOUT_P
    if cell == "projection_lstm":
        # its own P-wide h, recurrent weight and output gradient (the plain LSTM it is
        # compared with uses the others)
        P = proj_size(H)
        p.update(hp0=(0.1 * rng.standard_normal((B, P))).astype(dtype),
                 w_hhp=rng.uniform(-k, k, (G * H, P)).astype(dtype),
                 w_hr=rng.uniform(-k, k, (P, H)).astype(dtype),
                 dyp=rng.standard_normal((T, B, P)).astype(dtype))
    return p


def _states(cell, p):
    base = REGULARIZED.get(cell, (cell,))[0]
    return (p["h0"], p["c0"]) if base in ("lstm", "peephole_lstm") else (p["h0"],)


def regularized_runner(cell, p, mode):
    """fastrnn.functional for a regularized cell (masks as drawn by make_problem; zoneout
    at evaluation is its expectation)."""
    base, what = REGULARIZED[cell]
    args = (p["x"], *_states(cell, p), p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    name = base
    kw = {}
    if what == "layer_norm":
        name = "layernorm_" + base
        args += tuple(p["ln"])
    elif what == "recurrent_dropout":
        if mode == "infer":           # evaluation applies no dropout: the plain cell
            name = base
        else:
            kw["recurrent_mask"] = p["recurrent_mask"]
    else:
        kw["zoneout_h"] = ZONEOUT_P if mode == "infer" else p["zoneout_h"]
        if base == "lstm":
            kw["zoneout_c"] = ZONEOUT_P if mode == "infer" else p["zoneout_c"]
    fwd = getattr(F, f"{name}_forward")
    bwd = getattr(F, f"{name}_backward")
    if mode == "infer":
        return lambda: fwd(*args, training=False, **kw)
    extra = (None,) if base == "lstm" else ()
    return lambda: bwd(p["dy"], None, *extra, fwd(*args, **kw)[-1])


def torch_regularized_runner(torch, cell, p, mode):
    """The same math as regularized_runner written with torch's own operators, as a torch
    user would: torch.nn.functional.layer_norm around the products of a step-by-step cell,
    or nn.LSTMCell / GRUCell / RNNCell steps with the mask or the zoneout blend."""
    base, what = REGULARIZED[cell]
    nn = torch.nn
    T, B, I = p["x"].shape
    H = p["h0"].shape[1]
    t = {k: torch.from_numpy(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")}
    x = torch.from_numpy(p["x"])
    params = [t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"]]
    cellmod = None
    if what == "layer_norm":
        ln = [torch.from_numpy(a) for a in p["ln"]]
        params += ln
    else:
        cellmod = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[base](I, H)
        with torch.no_grad():
            cellmod.weight_ih.copy_(t["w_ih"])
            cellmod.weight_hh.copy_(t["w_hh"])
            cellmod.bias_ih.copy_(t["b_ih"])
            cellmod.bias_hh.copy_(t["b_hh"])
        params = list(cellmod.parameters())
    masks = {k: torch.from_numpy(p[k]) for k in ("recurrent_mask", "zoneout_h", "zoneout_c")
             if k in p}
    train = mode == "train"
    f = nn.functional

    def run(xs):
        h, c = t["h0"], t["c0"]
        ys = []
        if what == "layer_norm":
            G = GATES[cell]
            ax = f.layer_norm(xs @ t["w_ih"].T, (G * H,), ln[0], ln[1]) + t["b_ih"]
        for step in range(T):
            if what == "layer_norm":
                a = ax[step] + f.layer_norm(h @ t["w_hh"].T, (G * H,), ln[2], ln[3]) + t["b_hh"]
                if base == "lstm":
                    i, fg, g, o = a.chunk(4, 1)
                    c = torch.sigmoid(fg) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(f.layer_norm(c, (H,), ln[4], ln[5]))
                else:
                    gx, gh = ax[step], a - ax[step]
                    xr, xz, xn = gx.chunk(3, 1)
                    hr, hz, hn = gh.chunk(3, 1)
                    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                    n = torch.tanh(xn + r * hn)
                    h = (1 - z) * n + z * h
            else:
                hin = h * masks["recurrent_mask"] if (what == "recurrent_dropout"
                                                      and train) else h
                if base == "lstm":
                    h_new, c_new = cellmod(xs[step], (hin, c))
                elif base == "gru" and hin is not h:
                    # GRUCell(x, h * m) would blend with the masked h too; Keras's (and
                    # fastrnn's) recurrent dropout masks only the recurrent product
                    xr, xz, xn = (xs[step] @ cellmod.weight_ih.T + cellmod.bias_ih).chunk(3, 1)
                    hr, hz, hn = (hin @ cellmod.weight_hh.T + cellmod.bias_hh).chunk(3, 1)
                    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                    n = torch.tanh(xn + r * hn)
                    h_new, c_new = (1 - z) * n + z * h, None
                else:
                    h_new, c_new = cellmod(xs[step], hin), None
                if what == "zoneout":
                    if train:
                        h_new = torch.where(masks["zoneout_h"][step], h, h_new)
                        if c_new is not None:
                            c_new = torch.where(masks["zoneout_c"][step], c, c_new)
                    else:
                        h_new = ZONEOUT_P * h + (1 - ZONEOUT_P) * h_new
                        if c_new is not None:
                            c_new = ZONEOUT_P * c + (1 - ZONEOUT_P) * c_new
                h, c = h_new, c_new
            ys.append(h)
        return torch.stack(ys)

    if not train:
        def infer():
            with torch.inference_mode():
                return run(x)
        return infer
    xg = x.clone().requires_grad_(True)
    for q in params:
        q.requires_grad_(True)
    dy = torch.from_numpy(p["dy"])

    def train_step():
        return torch.autograd.grad(run(xg), [xg] + params, dy)
    return train_step


def numpy_like_runner(module, cell, p, mode):
    """fastrnn.functional or fastrnn.reference: a no-argument callable for one call."""
    if cell in REGULARIZED:
        return regularized_runner(cell, p, mode)
    fwd = getattr(module, f"{cell}_forward")
    bwd = getattr(module, f"{cell}_backward")
    args = (p["x"], *_states(cell, p), p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    dy = p["dy"]
    if cell == "peephole_lstm":
        args += (p["w_peep"],)
    if cell == "projection_lstm":
        args = (p["x"], p["hp0"], p["c0"], p["w_ih"], p["w_hhp"], p["b_ih"], p["b_hh"],
                p["w_hr"])
        dy = p["dyp"]
    if mode == "infer":
        kw = {"training": False} if module is F else {}
        return lambda: fwd(*args, **kw)
    extra = (None,) if cell in ("lstm", "peephole_lstm", "projection_lstm") else ()
    return lambda: bwd(dy, None, *extra, fwd(*args)[-1])


def torch_runner(torch, cell, p, mode):
    B, H = p["h0"].shape
    I = p["x"].shape[2]
    names = {"w_ih": "w_ih", "w_hh": "w_hh", "b_ih": "b_ih", "b_hh": "b_hh"}
    if cell == "projection_lstm":
        module = torch.nn.LSTM(I, H, proj_size=proj_size(H))
        names.update(w_hh="w_hhp", w_hr="w_hr")
    else:
        module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H)
    with torch.no_grad():
        for name, key in names.items():
            full = ("weight" if name[0] == "w" else "bias") + name[1:] + "_l0"
            getattr(module, full).copy_(torch.from_numpy(p[key]))
    h0 = torch.from_numpy(p["hp0" if cell == "projection_lstm" else "h0"])[None]
    state = (h0, torch.from_numpy(p["c0"])[None]) if "lstm" in cell else h0
    if mode == "infer":
        x = torch.from_numpy(p["x"])

        def infer():
            with torch.inference_mode():
                return module(x, state)
        return infer
    x = torch.from_numpy(p["x"]).clone().requires_grad_(True)
    dy = torch.from_numpy(p["dyp" if cell == "projection_lstm" else "dy"])
    params = list(module.parameters())

    def train():
        y, _ = module(x, state)
        return torch.autograd.grad(y, [x] + params, dy)
    return train


MIN_ROUNDS = 3          # every implementation is timed at least this many rounds


def interleaved(runners, min_rounds=MIN_ROUNDS, max_rounds=30, budget=2.0, block=0.15):
    """Median seconds per call of each runner.  The runners take turns in blocks of calls
    (about `block` seconds each), round after round, so drifts of a shared machine hit all
    of them alike; the first call of each block is not counted (it pays for the previous
    library's thread pools going idle)."""
    calls = {}
    for name, fn in runners.items():
        fn()                                            # warm-up
        t0 = time.perf_counter()
        fn()
        calls[name] = max(2, min(50, int(block / max(time.perf_counter() - t0, 1e-6)) + 1))
    times = {name: [] for name in runners}
    names = list(runners)
    start = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - start < budget):
        order = names[rounds % len(names):] + names[:rounds % len(names)]
        for name in order:
            fn = runners[name]
            for k in range(calls[name]):
                t0 = time.perf_counter()
                fn()
                if k:
                    times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: statistics.median(ts) for name, ts in times.items()}, rounds


def gemm_peak(n=2048, repeat=5):
    """Best float32 GEMM rate (GFLOP/s) of the BLAS libraries in this process (SciPy's,
    which fastrnn uses, and NumPy's), square n x n, all threads."""
    import scipy.linalg.blas as sblas
    a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    best = {}
    for name, fn in (("scipy", lambda: sblas.sgemm(1.0, a, a)), ("numpy", lambda: a @ a)):
        fn()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        best[name] = 2.0 * n ** 3 / min(ts) / 1e9
    return max(best.values()), best


def run_table(cells, shapes, modes, threads=None, use_torch=True, use_numpy=True,
              budget=2.0, min_rounds=MIN_ROUNDS, out=sys.stdout, progress=None,
              use_onnx=True):
    from fastrnn.engine.threads import threads_now
    torch = _torch() if use_torch else None
    ort = _onnxruntime() if use_onnx else None
    if threads is not None:
        fastrnn.set_num_threads(threads)
    nthreads = fastrnn.get_num_threads()
    if torch is not None:
        torch.set_num_threads(nthreads)
    threads_seen = {threads_now()}
    peak, peaks = gemm_peak()
    rows = []
    for cell in cells:
        for shape in shapes:
            B, T, I, H = shape
            p = make_problem(cell, B, T, I, H)
            for mode in modes:
                runners = {"fastrnn": numpy_like_runner(F, cell, p, mode)}
                if use_numpy and cell not in REGULARIZED:
                    runners["numpy"] = numpy_like_runner(R, cell, p, mode)
                if torch is not None and cell in REGULARIZED:
                    runners["torch"] = torch_regularized_runner(torch, cell, p, mode)
                elif torch is not None and cell not in ("peephole_lstm",):
                    runners["torch"] = torch_runner(torch, cell, p, mode)
                if cell in VARIANTS:
                    runners["plain"] = numpy_like_runner(F, VARIANTS[cell], p, mode)
                if ort is not None and mode == "infer" and cell not in ("projection_lstm",
                                                                        *REGULARIZED):
                    runners["onnxruntime"] = onnx_runner(cell, p, nthreads)
                med, rounds = interleaved(runners, min_rounds=min_rounds, budget=budget)
                used = threads_now()
                threads_seen.add(used)
                gf = flops(cell, B, T, I, H, mode) / med["fastrnn"] / 1e9
                row = {"cell": cell, "B": B, "T": T, "I": I, "H": H, "mode": mode,
                       "rounds": rounds, "fastrnn_ms": med["fastrnn"] * 1e3,
                       "fastrnn_gflops": gf, "fastrnn_threads": used}
                for other in ("numpy", "torch", "onnxruntime", "plain"):
                    if other in med:
                        row[f"{other}_ms"] = med[other] * 1e3
                        row[f"{other}_over_fastrnn"] = med[other] / med["fastrnn"]
                peers = [med[k] for k in ("torch", "onnxruntime") if k in med]
                if peers:                          # > 1: fastrnn is ahead of the best peer
                    row["best_peer_over_fastrnn"] = min(peers) / med["fastrnn"]
                rows.append(row)
                if progress is not None:
                    print(f"  {cell} {shape} {mode}: fastrnn {row['fastrnn_ms']:.2f} ms",
                          file=progress, flush=True)
    # the GEMM rate: the best of the measurements before and after the table
    peak2, peaks2 = gemm_peak()
    peak = max(peak, peak2)
    for row in rows:
        row["pct_of_gemm_peak"] = 100 * row["fastrnn_gflops"] / peak
    if out is not None:
        print(HEADER, file=out)
        for row in rows:
            print(_format_row(row), file=out, flush=True)
        variant_rows = [row for row in rows if "plain_ms" in row]
        if variant_rows:
            print("\nCell variants against fastrnn's plain cell on the same data:\n", file=out)
            print(VARIANT_HEADER, file=out)
            for row in variant_rows:
                print(f"| {row['cell']} | ({row['B']}, {row['T']}, {row['I']}, {row['H']}) | "
                      f"{row['mode']} | {row['fastrnn_ms']:.2f} | "
                      f"{VARIANTS[row['cell']]} | {row['plain_ms']:.2f} | "
                      f"{1 / row['plain_over_fastrnn']:.2f}x |", file=out)
    return {"gemm_peak_gflops": peak,
            "gemm_peaks": {k: max(peaks[k], peaks2[k]) for k in peaks},
            "threads": nthreads, "fastrnn_threads_seen": sorted(threads_seen),
            "torch": None if torch is None else torch.__version__,
            "onnxruntime": None if ort is None else ort.__version__,
            "config": fastrnn.config(), "rows": rows}


VARIANT_HEADER = ("| cell | (B, T, I, H) | mode | fastrnn ms | plain cell | plain cell ms | "
                  "variant / plain time |\n|---|---|---|---:|---|---:|---:|")

HEADER = ("| cell | (B, T, I, H) | mode | fastrnn ms | GFLOP/s | % GEMM peak | NumPy ms | "
          "torch ms | ONNX Runtime ms | NumPy/fastrnn | torch/fastrnn | ONNX Runtime/fastrnn | "
          "best peer/fastrnn |\n"
          "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def _format_row(r):
    def col(key, fmt):
        return fmt.format(r[key]) if key in r else "-"
    return (f"| {r['cell']} | ({r['B']}, {r['T']}, {r['I']}, {r['H']}) | {r['mode']} | "
            f"{r['fastrnn_ms']:.2f} | {r['fastrnn_gflops']:.0f} | {r['pct_of_gemm_peak']:.0f}% | "
            f"{col('numpy_ms', '{:.2f}')} | {col('torch_ms', '{:.2f}')} | "
            f"{col('onnxruntime_ms', '{:.2f}')} | "
            f"{col('numpy_over_fastrnn', '{:.2f}x')} | {col('torch_over_fastrnn', '{:.2f}x')} | "
            f"{col('onnxruntime_over_fastrnn', '{:.2f}x')} | "
            f"{col('best_peer_over_fastrnn', '{:.2f}x')} |")


# ---------------------------------------------------------------------------------------
# streaming latency

def run_stream(cells, batch=1, input_size=64, hidden=256, steps=200, threads=None,
               use_torch=True, budget=2.0, out=sys.stdout):
    """Median-of-blocks per-step latency of F.*_step (prepared weights) and of torch's cell
    and module called one step at a time."""
    torch = _torch() if use_torch else None
    if threads is not None:
        fastrnn.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(fastrnn.get_num_threads())
    rows = []
    for cell in cells:
        p = make_problem(cell, batch, steps, input_size, hidden)
        prepared = getattr(F, f"prepare_{cell}")(p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
        step = getattr(F, f"{cell}_step")
        xs = p["x"]

        def fast_block(n=steps):
            state = None
            for t in range(n):
                state = step(xs[t], state, prepared)

        runners = {"fastrnn": fast_block}
        if torch is not None:
            tcell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell,
                     "gru": torch.nn.GRUCell}[cell](input_size, hidden)
            tmod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM,
                    "gru": torch.nn.GRU}[cell](input_size, hidden)
            xt = torch.from_numpy(xs)

            def cell_block(n=steps):
                with torch.inference_mode():
                    state = None
                    for t in range(n):
                        state = tcell(xt[t], state)

            def module_block(n=steps):
                with torch.inference_mode():
                    state = None
                    for t in range(n):
                        _, state = tmod(xt[t:t + 1], state)

            runners["torch_cell"] = cell_block
            runners["torch_module"] = module_block
        med, _ = interleaved(runners, budget=budget)
        row = {"cell": cell, "B": batch, "I": input_size, "H": hidden,
               "fastrnn_us": med["fastrnn"] / steps * 1e6}
        if torch is not None:
            row["torch_cell_us"] = med["torch_cell"] / steps * 1e6
            row["torch_module_us"] = med["torch_module"] / steps * 1e6
            row["torch_best_over_fastrnn"] = min(row["torch_cell_us"],
                                                 row["torch_module_us"]) / row["fastrnn_us"]
        rows.append(row)
        if out is not None:
            print(_format_stream_row(row), file=out, flush=True)
    return {"threads": fastrnn.get_num_threads(), "rows": rows}


STREAM_HEADER = ("| cell | B | I | H | fastrnn us/step | torch cell us/step | "
                 "torch module us/step | torch/fastrnn |\n|---|---|---|---|---:|---:|---:|---:|")


def _format_stream_row(r):
    def col(key, fmt):
        return fmt.format(r[key]) if key in r else "-"
    return (f"| {r['cell']} | {r['B']} | {r['I']} | {r['H']} | {r['fastrnn_us']:.1f} | "
            f"{col('torch_cell_us', '{:.1f}')} | {col('torch_module_us', '{:.1f}')} | "
            f"{col('torch_best_over_fastrnn', '{:.2f}x')} |")


# ---------------------------------------------------------------------------------------
# peak memory (each measurement in a fresh process)

_PROBE = r"""
import json, resource, sys
import numpy as np
from fastrnn import bench, functional as F, reference as R
impl, cell, mode = sys.argv[1:4]
B, T, I, H = map(int, sys.argv[4:8])
p = bench.make_problem(cell, B, T, I, H)
if impl == "torch":
    import torch
    torch.set_num_threads(int(sys.argv[8]))
    fn = bench.torch_runner(torch, cell, p, mode)
else:
    import fastrnn
    fastrnn.set_num_threads(int(sys.argv[8]))
    fn = bench.numpy_like_runner(F if impl == "fastrnn" else R, cell, p, mode)
def high_water_kib():
    # VmHWM: this process image's peak RSS (ru_maxrss would include the parent's RSS at fork)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import gc
gc.collect()
try:
    with open("/proc/self/clear_refs", "w") as f:     # reset the peak to the current RSS
        f.write("5")
except OSError:
    pass
before = high_water_kib()
fn()
after = high_water_kib()
print(json.dumps({"peak_extra_mib": (after - before) / 1024}))
"""


def peak_memory(impl, cell, shape, mode, threads):
    """Extra peak resident memory (MiB) of one call, beyond the inputs, in a new process."""
    B, T, I, H = shape
    res = subprocess.run([sys.executable, "-c", _PROBE, impl, cell, mode, str(B), str(T),
                          str(I), str(H), str(threads)], capture_output=True, text=True,
                         timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"memory probe for {impl} failed: {res.stderr[-500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_extra_mib"]


def run_memory(cells, shapes, modes, threads=None, use_torch=True, out=sys.stdout):
    threads = threads or fastrnn.get_num_threads()
    impls = ["fastrnn"] + (["torch"] if use_torch and _torch() is not None else [])
    rows = []
    for cell in cells:
        for shape in shapes:
            for mode in modes:
                row = {"cell": cell, "B": shape[0], "T": shape[1], "I": shape[2],
                       "H": shape[3], "mode": mode}
                for impl in impls:
                    row[f"{impl}_mib"] = peak_memory(impl, cell, shape, mode, threads)
                rows.append(row)
                if out is not None:
                    print(f"| {cell} | {shape} | {mode} | {row['fastrnn_mib']:.1f} | "
                          f"{row.get('torch_mib', float('nan')):.1f} |", file=out, flush=True)
    return {"rows": rows}


MEMORY_HEADER = ("| cell | (B, T, I, H) | mode | fastrnn extra peak MiB | torch extra peak MiB |"
                 "\n|---|---|---|---:|---:|")


# ---------------------------------------------------------------------------------------
# Python threads: independent calls from two threads run side by side (the GIL is released)

def run_concurrency(cell="lstm", shape=(8, 50, 32, 64), mode="infer", engine_threads=1,
                    python_threads=2, calls=1000, out=sys.stdout):
    """Throughput (calls/s) of one Python thread making `calls` calls, and of
    `python_threads` threads each making `calls` calls on independent inputs, with
    `engine_threads` threads per engine call."""
    import threading
    from fastrnn.engine.threads import using
    with using(engine_threads):
        runners = [numpy_like_runner(F, cell, make_problem(cell, *shape, seed=s), mode)
                   for s in range(python_threads)]

        def work(fn, n):
            for _ in range(n):
                fn()

        for fn in runners:
            work(fn, max(1, calls // 20))
        t0 = time.perf_counter()
        work(runners[0], calls)
        one = calls / (time.perf_counter() - t0)
        threads = [threading.Thread(target=work, args=(fn, calls)) for fn in runners]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        many = python_threads * calls / (time.perf_counter() - t0)
    row = {"cell": cell, "shape": list(shape), "mode": mode, "engine_threads": engine_threads,
           "python_threads": python_threads, "one_thread_calls_per_s": one,
           "many_threads_calls_per_s": many, "speedup": many / one}
    if out is not None:
        print(f"{cell} {shape} {mode}, {engine_threads} engine thread(s) per call: "
              f"1 Python thread {one:.0f} calls/s, {python_threads} Python threads "
              f"{many:.0f} calls/s ({many / one:.2f}x)", file=out, flush=True)
    return row


# ---------------------------------------------------------------------------------------
# a word-level language model's training step

def run_word_lm(vocab=5000, embed=128, hidden=256, batch=32, seq_len=35, threads=None,
                use_torch=True, budget=2.0, out=sys.stdout):
    """Tokens/s of one training step (forward, softmax cross-entropy over the vocabulary,
    backward, SGD update) of Embedding(vocab, embed) + LSTM(embed, hidden) +
    Dense(hidden, vocab), fastrnn vs the same model in torch, on the same data."""
    from fastrnn import layers as L, losses, optim
    torch = _torch() if use_torch else None
    if threads is not None:
        fastrnn.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(fastrnn.get_num_threads())
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, (seq_len, batch))
    targets = rng.integers(0, vocab, (seq_len, batch))
    model = fastrnn.Sequential([L.Embedding(vocab, embed, seed=0), L.LSTM(embed, hidden, seed=0),
                                L.Dense(hidden, vocab, seed=0)])
    ce = losses.CrossEntropy()
    opt = optim.SGD(model, lr=0.1)

    def fast():
        model.zero_grad()
        ce.forward(model.forward(ids), targets)
        model.backward(ce.backward())
        opt.step()

    runners = {"fastrnn": fast}
    if torch is not None:
        class LM(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = torch.nn.Embedding(vocab, embed)
                self.rnn = torch.nn.LSTM(embed, hidden)
                self.out = torch.nn.Linear(hidden, vocab)

            def forward(self, x):
                return self.out(self.rnn(self.emb(x))[0])

        tm = LM()
        topt = torch.optim.SGD(tm.parameters(), lr=0.1)
        tx, tt = torch.from_numpy(ids), torch.from_numpy(targets)

        def slow():
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tm(tx).reshape(-1, vocab), tt.reshape(-1))
            loss.backward()
            topt.step()
        runners["torch"] = slow
    med, rounds = interleaved(runners, budget=budget)
    tokens = batch * seq_len
    row = {"vocab": vocab, "embed": embed, "hidden": hidden, "batch": batch, "seq_len": seq_len,
           "rounds": rounds, "fastrnn_ms": med["fastrnn"] * 1e3,
           "fastrnn_tokens_per_s": tokens / med["fastrnn"]}
    if "torch" in med:
        row.update(torch_ms=med["torch"] * 1e3, torch_tokens_per_s=tokens / med["torch"],
                   fastrnn_over_torch=med["torch"] / med["fastrnn"])
    if out is not None:
        line = (f"word LM step (V={vocab}, E={embed}, H={hidden}, B={batch}, T={seq_len}): "
                f"fastrnn {row['fastrnn_ms']:.1f} ms, {row['fastrnn_tokens_per_s']:,.0f} tokens/s")
        if "torch" in med:
            line += (f"; torch {row['torch_ms']:.1f} ms, {row['torch_tokens_per_s']:,.0f} "
                     f"tokens/s ({row['fastrnn_over_torch']:.2f}x)")
        print(line, file=out, flush=True)
    return row
