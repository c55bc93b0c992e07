"""Pictures (matplotlib, the optional ``plot`` extra: ``pip install "fastrnn[plot]"``).

matplotlib is imported only when a picture is asked for, with the non-interactive Agg
backend unless a backend was chosen already; every function returns the figure and, given
``path``, also saves it as a PNG.
"""
import numpy as np

__all__ = ["attention_map"]


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
