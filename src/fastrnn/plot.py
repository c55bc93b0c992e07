"""Pictures (matplotlib, the optional ``plot`` extra: ``pip install "fastrnn[plot]"``).

matplotlib is imported only when a picture is asked for, with the non-interactive Agg
backend unless a backend was chosen already; every function returns the figure and, given
``path``, also saves it as a PNG.
"""
import numpy as np

__all__ = ["training_curves", "bench_chart", "read_bench", "attention_map"]


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError('pictures need matplotlib: pip install "fastrnn[plot]" (or pip '
                          'install matplotlib)') from None
    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def attention_map(weights, marked=None, path=None, *, title="attention weights"):
    """Attention weights (rows, T) as an image, one row per sequence, with the true
    positions `marked` (rows,) drawn as white dots when given."""
    plt = _pyplot()
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (rows, T), got shape {w.shape}")
    fig, ax = plt.subplots(figsize=(min(12, 2 + w.shape[1] / 20), 1 + 0.5 * w.shape[0]))
    im = ax.imshow(w, aspect="auto", cmap="viridis", interpolation="nearest")
    if marked is not None:
        m = np.asarray(marked)
        ax.scatter(m, np.arange(len(m)), s=30, facecolors="none", edgecolors="white",
                   label="marked step")
        ax.legend(loc="upper left", fontsize="small")
    ax.set_xlabel("time step")
    ax.set_ylabel("sequence")
    ax.set_yticks(np.arange(w.shape[0]))
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="weight")
    return _finish(fig, path)


# ---- training curves --------------------------------------------------------------------

def _best_epoch(history):
    """(name, index) of the best epoch: the lowest val_loss, else the lowest loss."""
    for name in ("val_loss", "loss"):
        values = np.asarray(history.history.get(name, []), dtype=np.float64)
        if values.size and np.isfinite(values).any():
            return name, int(np.nanargmin(values))
    return None, None


def training_curves(history, path=None, metrics=None, *, baseline=None, target=None,
                    target_metric=None, title=None):
    """Loss and each metric per epoch (one panel each; training and validation on the same
    axes; a log scale for the loss and perplexity when positive), the best epoch (lowest
    val_loss, else loss) marked, and the stop reason in the title.  `baseline` / `target`
    are drawn as horizontal lines on the panel of `target_metric` (e.g. "val_loss")."""
    plt = _pyplot()
    logged = history.history
    names = [k for k in logged if not k.startswith("val_") and k != "lr"]
    names += [k[4:] for k in logged if k.startswith("val_") and k[4:] not in names]
    names.sort(key=lambda k: k != "loss")          # the loss first, then the metrics
    if metrics is not None:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in metrics if m not in names]
        if unknown:
            raise ValueError(f"metrics {unknown} were not logged; the history has {names}")
        names = metrics
    if not names or not history.epoch:
        raise ValueError("the history has no epochs to plot")
    epochs = np.asarray(history.epoch) + 1
    best_name, best = _best_epoch(history)
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    fig, axes = plt.subplots(1, len(names), figsize=(max(7.0, 4.6 * len(names)), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        positive = True
        for key, label, style in ((name, "training", "-"), ("val_" + name, "validation",
                                                              "--")):
            if key in logged:
                v = np.asarray(logged[key], dtype=np.float64)
                ax.plot(epochs, v, style, marker="." if len(v) < 40 else None, label=label)
                positive &= bool(np.all(v[np.isfinite(v)] > 0))
        goal = target_metric[4:] if target_metric and target_metric.startswith("val_") \
            else target_metric
        if name == goal:
            if baseline is not None:
                ax.axhline(baseline, color="grey", linestyle=":",
                           label=f"baseline {baseline:.3g}")
                positive &= baseline > 0
            if target is not None:
                ax.axhline(target, color="green", linestyle="-.", label=f"target {target:.3g}")
                positive &= target > 0
        if best is not None:
            ax.axvline(epochs[best], color="red", alpha=0.4, linewidth=1,
                       label=f"best epoch {epochs[best]} ({best_name})")
        if positive and (name == "loss" or "perplexity" in name):
            ax.set_yscale("log")
            plain = FuncFormatter(lambda v, _: f"{v:.3g}")
            lo, hi = ax.get_ylim()
            ax.yaxis.set_major_formatter(plain)
            if hi < 10 * lo:                       # less than a decade: label the minor ticks
                ax.yaxis.set_minor_formatter(plain)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    heading = title or "training curves"
    if getattr(history, "stop_reason", None):
        heading += f" (stopped: {history.stop_reason})"
    fig.suptitle(heading)
    fig.tight_layout()
    return _finish(fig, path)


# ---- benchmark chart --------------------------------------------------------------------

def read_bench(paths):
    """The table rows of one or more ``fastrnn bench --json`` files; with several runs, each
    (cell, shape, mode) row holds the median of the runs' ratios (and ``runs``, their
    number)."""
    import json
    keys = ("cell", "B", "T", "I", "H", "mode")
    merged = {}
    for path in paths:
        with open(path) as f:
            try:
                data = json.load(f)
            except ValueError as exc:
                raise ValueError(f"{path}: not a fastrnn bench --json file ({exc})") from None
        table = data.get("table") if isinstance(data, dict) else None
        if not table or "rows" not in table:
            raise ValueError(f"{path}: not a fastrnn bench --json file with a table")
        for r in table["rows"]:
            merged.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, runs in merged.items():
        row = dict(zip(keys, key), runs=len(runs))
        for name in ("torch_over_fastrnn", "onnxruntime_over_fastrnn", "fastrnn_ms"):
            vals = [r[name] for r in runs if name in r]
            if vals:
                row[name] = float(np.median(vals))
        out.append(row)
    return out


def bench_chart(rows, path=None, *, title="time of the peers / fastrnn's (> 1: fastrnn is "
                                          "faster)"):
    """The ``fastrnn bench`` table as bars: for each cell and shape, torch's and ONNX
    Runtime's time over fastrnn's on a log axis with 1.0 marked, inference and training
    side by side."""
    plt = _pyplot()
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    rows = [r for r in rows if any(f"{p}_over_fastrnn" in r for p in ("torch", "onnxruntime"))]
    if not rows:
        raise ValueError("the table has no torch or ONNX Runtime timings to chart")
    modes = [m for m in ("infer", "train") if any(r["mode"] == m for r in rows)]
    peers = [("torch", "torch"), ("onnxruntime", "ONNX Runtime")]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 0.9 + 0.42 * max(
        sum(r["mode"] == m for r in rows) for m in modes) + 1), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        mine = [r for r in rows if r["mode"] == mode]
        labels = [f"{r['cell']} ({r['B']}, {r['T']}, {r['I']}, {r['H']})" for r in mine]
        y = np.arange(len(mine))
        height = 0.8 / len(peers)
        drawn = [1.0]                              # the range always shows 1x
        for k, (key, name) in enumerate(peers):
            vals = np.array([r.get(f"{key}_over_fastrnn", np.nan) for r in mine])
            if np.isfinite(vals).any():
                pos = y + (k - (len(peers) - 1) / 2) * height
                ax.barh(pos, vals, height, label=name)
                for p, v in zip(pos, vals):
                    if np.isfinite(v):
                        ax.text(v * 1.03, p, f"{v:.2f}", va="center", fontsize="x-small")
                drawn += [v for v in vals if np.isfinite(v) and v > 0]
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        lo, hi = min(drawn) / 1.3, max(drawn) * 1.3
        ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128) if lo <= t <= hi]
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize="small")
        ax.invert_yaxis()
        ax.set_xlabel("peer time / fastrnn time (log)")
        ax.set_title({"infer": "inference", "train": "training step"}[mode])
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)
