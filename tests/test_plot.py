"""fastrnn.plot (the optional matplotlib extra): pictures render to non-blank PNGs with the
expected artists, and without matplotlib the documented error."""
import sys

import numpy as np
import pytest

from fastrnn import plot


def _png_stats(path):
    import matplotlib.image as mpimg
    img = mpimg.imread(path)
    return img.shape, float(img[..., :3].var())


def test_attention_map_renders(tmp_path):
    pytest.importorskip("matplotlib")
    w = np.zeros((3, 50))
    w[0, 10], w[1, 20], w[2, 45] = 1.0, 0.7, 0.9
    w[1, 21] = 0.3
    path = tmp_path / "att.png"
    fig = plot.attention_map(w, [10, 20, 45], path=path, title="where it looks")
    shape, var = _png_stats(path)
    assert shape[0] > 100 and shape[1] > 300 and var > 1e-3         # not blank
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time step" and ax.get_ylabel() == "sequence"
    assert ax.get_title() == "where it looks"
    assert np.array_equal(ax.images[0].get_array(), w)
    offsets = ax.collections[0].get_offsets()                         # the marked steps
    assert np.array_equal(np.asarray(offsets), [[10, 0], [20, 1], [45, 2]])
    with pytest.raises(ValueError, match="weights must be 2-D"):
        plot.attention_map(np.zeros(5))


def test_without_matplotlib_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "fastrnn\[plot\]"'):
        plot.attention_map(np.zeros((1, 3)))


def test_train_attention_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from fastrnn.__main__ import main
    path = tmp_path / "a.png"
    assert main(["train", "attention", "--seq-len", "60", "--hidden", "16", "--quiet",
                 "--plot", str(path)]) == 0
    shape, var = _png_stats(path)
    assert var > 1e-3


def test_train_plot_is_for_the_attention_task(capsys):
    from fastrnn.__main__ import main
    assert main(["train", "sine", "--plot", "x.png"]) == 2
    assert "--plot is for the attention task" in capsys.readouterr().err
