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
    """The attention task's --plot: its curves at PATH and its attention map beside them."""
    pytest.importorskip("matplotlib")
    from fastrnn.__main__ import main
    path = tmp_path / "a.png"
    assert main(["train", "attention", "--seq-len", "60", "--hidden", "16", "--quiet",
                 "--plot", str(path)]) == 0
    for png in (path, tmp_path / "a-attention.png"):
        shape, var = _png_stats(png)
        assert var > 1e-3


def _history():
    from fastrnn.training import History
    h = History()
    for e in range(8):
        h.append(e, {"loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1) + 0.1 * max(0, e - 5),
                     "accuracy": 0.5 + 0.05 * e, "val_accuracy": 0.45 + 0.05 * e, "lr": 0.01})
    h.stop_reason = "early stopping: val_loss did not improve for 2 epochs"
    return h


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_history_plot(tmp_path):
    pytest.importorskip("matplotlib")
    h = _history()
    fig = h.plot(tmp_path / "h.png")
    shape, var = _png_stats(tmp_path / "h.png")
    assert shape[0] > 250 and shape[1] > 600 and var > 1e-3
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylabel() == "loss" and acc_ax.get_ylabel() == "accuracy"
    assert loss_ax.get_xlabel() == "epoch" and loss_ax.get_yscale() == "log"
    assert acc_ax.get_yscale() == "linear"
    lines = _lines(loss_ax)
    assert np.allclose(lines["training"].get_ydata(), h.history["loss"])
    assert np.allclose(lines["validation"].get_ydata(), h.history["val_loss"])
    assert np.array_equal(lines["training"].get_xdata(), np.arange(1, 9))
    best = [k for k in lines if k.startswith("best epoch")]
    assert best == ["best epoch 6 (val_loss)"]           # the lowest val_loss
    assert "early stopping" in fig._suptitle.get_text()
    only = h.plot(metrics="accuracy")
    assert [ax.get_ylabel() for ax in only.axes] == ["accuracy"]
    with pytest.raises(ValueError, match=r"\['f1'\] were not logged"):
        h.plot(metrics=["f1"])


def test_train_plot_has_baseline_and_target(tmp_path):
    pytest.importorskip("matplotlib")
    from fastrnn.__main__ import main
    path = tmp_path / "sine.png"
    assert main(["train", "sine", "--quiet", "--plot", str(path)]) == 0
    _, var = _png_stats(path)
    assert var > 1e-3
    import matplotlib.pyplot as plt
    fig = plt.gcf()
    labels = list(_lines(fig.axes[0]))
    assert any(k.startswith("baseline ") for k in labels)
    assert any(k.startswith("target ") for k in labels)
    assert "fastrnn train sine" in fig._suptitle.get_text()


def test_plot_command_reads_a_csv_log(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from fastrnn.__main__ import main
    from fastrnn.callbacks import CSVLogger
    log = tmp_path / "log.csv"
    logger = CSVLogger(log)
    logger.on_train_begin()
    h = _history()
    for e in h.epoch:
        logger.on_epoch_end(e, {k: v[e] for k, v in h.history.items()})
    logger.on_train_end()
    from fastrnn.training import History
    back = History.from_csv(log)
    assert back.epoch == h.epoch and np.allclose(back.history["val_loss"],
                                                 h.history["val_loss"])
    out = tmp_path / "curves.png"
    assert main(["plot", str(log), "-o", str(out)]) == 0
    assert "curves of 8 epochs saved" in capsys.readouterr().out
    _, var = _png_stats(out)
    assert var > 1e-3
    (tmp_path / "bad.csv").write_text("step,loss\n1,0.5\n")
    assert main(["plot", str(tmp_path / "bad.csv")]) == 2
    assert "not a CSVLogger file" in capsys.readouterr().err


def _bench_rows():
    rows = []
    for cell, t in (("lstm", 1.4), ("gru", 0.8)):
        for mode in ("infer", "train"):
            row = {"cell": cell, "B": 8, "T": 50, "I": 32, "H": 64, "mode": mode,
                   "torch_over_fastrnn": t * (1.5 if mode == "train" else 1.0)}
            if mode == "infer":
                row["onnxruntime_over_fastrnn"] = t * 1.2
            rows.append(row)
    return rows


def test_bench_chart(tmp_path):
    pytest.importorskip("matplotlib")
    fig = plot.bench_chart(_bench_rows(), tmp_path / "b.png")
    _, var = _png_stats(tmp_path / "b.png")
    assert var > 1e-3
    infer, train = fig.axes
    assert infer.get_title() == "inference" and train.get_title() == "training step"
    assert infer.get_xscale() == "log"
    widths = sorted(round(p.get_width(), 6) for p in infer.patches)
    assert widths == [0.8, 0.96, 1.4, 1.68]                    # torch and ONNX Runtime bars
    assert len(train.patches) == 2                             # torch only in training
    assert any(np.allclose(line.get_xdata(), 1.0) for line in infer.get_lines())
    with pytest.raises(ValueError, match="no torch or ONNX Runtime"):
        plot.bench_chart([{"cell": "lstm", "mode": "infer"}])


def test_plot_command_charts_the_median_of_bench_runs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import json
    from fastrnn.__main__ import main
    paths = []
    for k, scale in enumerate((1.0, 2.0, 4.0)):
        rows = _bench_rows()
        for r in rows:
            r["torch_over_fastrnn"] *= scale
        paths.append(str(tmp_path / f"run{k}.json"))
        with open(paths[-1], "w") as f:
            json.dump({"table": {"rows": rows}}, f)
    rows = plot.read_bench(paths)
    assert all(r["runs"] == 3 for r in rows)
    np.testing.assert_allclose([r["torch_over_fastrnn"] for r in rows],
                               [2 * r["torch_over_fastrnn"] for r in _bench_rows()])
    out = tmp_path / "chart.png"
    assert main(["plot", *paths, "-o", str(out)]) == 0
    assert "chart of 4 configurations saved" in capsys.readouterr().out
    assert _png_stats(out)[1] > 1e-3
    (tmp_path / "bad.json").write_text("{}")
    assert main(["plot", str(tmp_path / "bad.json")]) == 2
    assert "not a fastrnn bench --json file" in capsys.readouterr().err


def test_bench_plot_command(tmp_path):
    pytest.importorskip("matplotlib")
    if not any(__import__("importlib").util.find_spec(m) for m in ("torch", "onnxruntime")):
        pytest.skip("needs torch or ONNX Runtime to compare with")
    from fastrnn.__main__ import main
    path = tmp_path / "bench.png"
    assert main(["bench", "--cells", "gru", "--shape", "2,5,4,8", "--budget", "0.05",
                 "--json", "--plot", str(path)]) == 0
    _, var = _png_stats(path)
    assert var > 1e-3


def test_the_pictures_without_matplotlib(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "fastrnn\[plot\]"'):
        _history().plot()
    from fastrnn.__main__ import main
    assert main(["plot", "log.csv"]) == 2
    assert main(["train", "sine", "--plot", "x.png"]) == 2
    assert main(["bench", "--plot", "x.png"]) == 2
    assert capsys.readouterr().err.count('pip install "fastrnn[plot]"') == 3
