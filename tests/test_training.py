"""The fit loop, callbacks, schedules, metrics, data helpers, built-in tasks (short versions)
and the `fastrnn train` command."""
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import callbacks, data, layers as L, losses, metrics, optim, schedules, tasks


def regression_data(n=64, T=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, 3)).astype(np.float32)
    y = x[:, :, :1].sum(axis=1) * 0.3                      # (n, 1)
    return x, y.astype(np.float32)


def small_model(batch_first=True, seed=0, stateful=False, return_sequences=False):
    rec = L.GRU(3, 8, batch_first=batch_first, seed=seed, stateful=stateful)
    tail = [] if return_sequences else [L.LastStep(batch_first=batch_first)]
    return fastrnn.Sequential([rec] + tail + [L.Dense(8, 1, seed=seed)])


# ----------------------------------------------------------------------------------------
# fit

def test_fit_reduces_loss_and_records_history():
    x, y = regression_data()
    model = small_model()
    h = model.fit(x, y, loss="mse", optimizer=optim.Adam(model, lr=1e-2), epochs=8,
                  batch_size=16, validation_data=regression_data(32, seed=1),
                  metrics=["mae"], verbose=0, seed=0)
    assert h.epoch == list(range(8))
    assert set(h.history) == {"loss", "mae", "val_loss", "val_mae", "lr"}
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert h.stop_reason is None and not h.interrupted


def test_fit_is_reproducible_with_a_seed():
    x, y = regression_data()
    runs = []
    for _ in range(2):
        model = small_model()
        model.fit(x, y, loss="mse", optimizer="adam", epochs=2, batch_size=8, verbose=0,
                  seed=3)
        runs.append(model.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_time_major_and_batch_first_models_train_identically():
    x, y = regression_data()
    a, b = small_model(batch_first=True), small_model(batch_first=False)
    ha = a.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=16, verbose=0, seed=1)
    hb = b.fit(x, y, loss="mse", optimizer="sgd", epochs=2, batch_size=16, verbose=0, seed=1)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(a.predict(x), b.predict(x), rtol=1e-5, atol=1e-6)
    assert b.predict(x).shape == (64, 1)


def test_sequence_targets_lengths_and_masking():
    rng = np.random.default_rng(0)
    n, T = 32, 7
    x = rng.standard_normal((n, T, 3)).astype(np.float32)
    lengths = rng.integers(2, T + 1, n)
    y = np.cumsum(x[:, :, :1], axis=1)                     # (n, T, 1) running sum
    y[np.arange(T)[None, :] >= lengths[:, None]] = 1e6     # garbage in the padding
    for bf in (True, False):
        model = small_model(batch_first=bf, return_sequences=True)
        h = model.fit(x, y, loss="mse", optimizer="adam", epochs=3, batch_size=8,
                      lengths=lengths, verbose=0, seed=0)
        assert np.isfinite(h.history["loss"]).all() and h.history["loss"][-1] < 10
        out = model.predict(x, lengths=lengths)
        assert out.shape == (n, T, 1)
        # the 1e6 targets in the padding would dominate an unmasked loss
        ev = model.evaluate(x, y, loss="mse", lengths=lengths)["loss"]
        valid = np.arange(T)[None, :] < lengths[:, None]
        np.testing.assert_allclose(ev, np.mean((out - y)[valid] ** 2), rtol=1e-4)


def test_ragged_sequences_are_padded_per_batch():
    rng = np.random.default_rng(1)
    seqs = [rng.standard_normal((int(k), 3)).astype(np.float32)
            for k in rng.integers(1, 9, 40)]
    y = np.array([s[:, 0].sum() for s in seqs], np.float32)[:, None]
    model = small_model()
    h = model.fit(seqs, y, loss="mse", optimizer="adam", epochs=2, batch_size=8, verbose=0)
    assert len(h.epoch) == 2
    padded, lengths = data.pad_sequences(seqs)
    np.testing.assert_allclose(model.predict(seqs), model.predict(padded, lengths=lengths))
    ev = model.evaluate(seqs, y, loss="mse")
    assert set(ev) == {"loss"}


def test_classification_with_accuracy_and_embedding():
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 5, (200, 6))
    y = (ids == 3).any(axis=1).astype(np.int64)
    model = fastrnn.Sequential([L.Embedding(5, 8, seed=0),
                                L.LSTM(8, 16, batch_first=True, seed=0),
                                L.LastStep(batch_first=True), L.Dense(16, 2, seed=0)])
    h = model.fit(ids, y, loss=losses.CrossEntropy(), optimizer=optim.Adam(model, lr=1e-2),
                  epochs=15, batch_size=20, metrics=["accuracy"], verbose=0, seed=0)
    assert h.history["accuracy"][-1] > 0.9
    assert model.evaluate(ids, y, metrics=["accuracy"])["accuracy"] > 0.9


def test_clipping_options_are_applied(monkeypatch):
    calls = []
    from fastrnn import clip as clip_mod
    real_norm, real_value = clip_mod.clip_grad_norm, clip_mod.clip_grad_value
    monkeypatch.setattr(clip_mod, "clip_grad_norm",
                        lambda g, c: calls.append(("norm", c)) or real_norm(g, c))
    monkeypatch.setattr(clip_mod, "clip_grad_value",
                        lambda g, c: calls.append(("value", c)) or real_value(g, c))
    x, y = regression_data(16)
    model = small_model()
    model.fit(x, y, loss="mse", optimizer="sgd", batch_size=8, clip_norm=0.5,
              clip_value=0.1, verbose=0)
    assert calls == [("value", 0.1), ("norm", 0.5)] * 2
    g = model.grads                                   # the last step's clipped gradients
    assert max(np.abs(v).max() for v in g.values()) <= 0.1 + 1e-7


def test_nan_loss_stops_before_the_update_and_names_the_step():
    x, y = regression_data(32)
    y[20] = np.nan                                  # sample 20 -> batch 3 without shuffling
    model = small_model()
    opt = optim.SGD(model, lr=0.1)
    before = None

    class Snapshot(callbacks.Callback):
        def on_batch_end(self, step, logs=None):
            nonlocal before
            before = model.state_dict()

    with pytest.warns(RuntimeWarning, match="non-finite loss .* epoch 1, step 3"):
        h = model.fit(x, y, loss="mse", optimizer=opt, batch_size=8, epochs=3, shuffle=False,
                      verbose=0, callbacks=[Snapshot()])
    assert "step 3" in h.stop_reason and len(h.epoch) == 1
    for k, v in model.state_dict().items():
        assert np.all(np.isfinite(v))
        np.testing.assert_array_equal(v, before[k])    # step 3 changed nothing


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX only")
def test_ctrl_c_stops_after_the_current_step():
    x, y = regression_data(64)
    model = small_model()
    # what fit must restore: Python's default handler, or SIG_IGN when this process was
    # started as a background job of a non-interactive shell
    handler = signal.getsignal(signal.SIGINT)

    class Interrupt(callbacks.Callback):
        def on_batch_end(self, step, logs=None):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    h = model.fit(x, y, loss="mse", optimizer="adam", batch_size=8, epochs=5, verbose=0,
                  callbacks=[Interrupt()], stream=io.StringIO())
    assert h.interrupted and "epoch 1, step 2" in h.stop_reason
    assert len(h.epoch) == 1
    assert all(np.all(np.isfinite(v)) for v in model.parameters().values())
    assert signal.getsignal(signal.SIGINT) is handler


def test_stateful_model_keeps_batches_in_order_and_resets_each_epoch():
    T, B = 5, 4
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3 * B + 1, T, 3)).astype(np.float32)   # one extra: dropped
    y = rng.standard_normal((3 * B + 1, 1)).astype(np.float32)
    model = small_model(stateful=True)
    seen = []
    real = model.forward

    def spy(xb, **kw):
        seen.append(np.array(xb))
        return real(xb, **kw)

    model.forward = spy
    model.fit(x, y, loss="mse", optimizer="sgd", batch_size=B, epochs=2, verbose=0, seed=0)
    assert len(seen) == 6
    for i, xb in enumerate(seen):
        np.testing.assert_array_equal(xb, x[(i % 3) * B:(i % 3 + 1) * B])
    assert model[0]._states is None                 # reset at the end of each epoch


def test_progress_output_modes():
    x, y = regression_data(32)

    class TTY(io.StringIO):
        def isatty(self):
            return True

    for verbose, stream, expect in [(0, io.StringIO(), None), (1, io.StringIO(), "lines"),
                                    (2, io.StringIO(), "lines"), (1, TTY(), "bar")]:
        model = small_model()
        model.fit(x, y, loss="mse", optimizer="sgd", batch_size=8, epochs=2,
                  verbose=verbose, stream=stream)
        out = stream.getvalue()
        if expect is None:
            assert out == ""
        elif expect == "lines":
            assert out.count("\n") == 2 and "Epoch 2/2" in out and "seq/s" in out
        else:
            assert "ETA" in out and "\r" in out and "4/4" in out


def test_fit_refuses_bad_arguments():
    x, y = regression_data(8)
    model = small_model()
    bad = [
        (dict(epochs=-1), ValueError, "epochs must be"),
        (dict(batch_size=0), ValueError, "batch_size must be"),
        (dict(loss="hinge"), ValueError, "loss must be"),
        (dict(optimizer="lbfgs"), ValueError, "optimizer must be"),
        (dict(clip_norm=0), ValueError, "clip_norm must be"),
        (dict(clip_value=-1), ValueError, "clip_value must be"),
        (dict(validation_data=(x,)), ValueError, "validation_data must be"),
        (dict(callbacks=[print]), TypeError, "callbacks must be"),
        (dict(metrics=["f1"]), ValueError, "metric must be"),
        (dict(lengths=[1, 2]), ValueError, "lengths must be 8 integers"),
        (dict(optimizer=optim.SGD(small_model(seed=1))), ValueError, "different model"),
        (dict(optimizer=optim.SGD(list(model.parameters().values()))), ValueError,
         "built from the model"),
    ]
    for kw, exc, match in bad:
        args = dict(loss="mse", optimizer="sgd", verbose=0)
        args.update(kw)
        with pytest.raises(exc, match=match):
            model.fit(x, y, **args)
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:4], loss="mse", optimizer="sgd", verbose=0)
    with pytest.raises(ValueError, match="stateful model needs"):
        small_model(stateful=True).fit(x, y, loss="mse", optimizer="sgd", batch_size=16,
                                       verbose=0)


# ----------------------------------------------------------------------------------------
# callbacks and schedules

def test_early_stopping_restores_best_weights():
    x, y = regression_data()
    model = small_model()
    es = callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    vals = iter([1.0, 0.5, 0.7, 0.8, 0.2, 0.1])
    snaps = []

    class FakeLoss(callbacks.Callback):           # drives the monitored value
        def on_epoch_end(self, epoch, logs=None):
            logs["loss"] = next(vals)
            snaps.append(model.state_dict())

    h = model.fit(x, y, loss="mse", optimizer="sgd", epochs=6, batch_size=32, verbose=0,
                  callbacks=[FakeLoss(), es])
    assert len(h.epoch) == 4 and es.stopped_epoch == 3 and es.best_epoch == 1
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, snaps[1][k])


def test_model_checkpoint_and_csv_logger(tmp_path):
    x, y = regression_data()
    model = small_model()
    ck = callbacks.ModelCheckpoint(tmp_path / "m-{epoch:02d}-{loss:.3f}.fastrnn")
    best = callbacks.ModelCheckpoint(tmp_path / "best.fastrnn", monitor="val_loss",
                                     save_best_only=True)
    log = callbacks.CSVLogger(tmp_path / "log.csv")
    model.fit(x, y, loss="mse", optimizer="adam", epochs=3, batch_size=16, verbose=0,
              validation_data=regression_data(16, seed=2), callbacks=[ck, best, log])
    assert len(ck.saved) == 3 and all(os.path.exists(p) for p in ck.saved)
    assert os.path.basename(ck.saved[0]).startswith("m-01-")
    assert 1 <= len(best.saved) <= 3
    back = fastrnn.load(tmp_path / "best.fastrnn")
    assert isinstance(back, fastrnn.Sequential)
    rows = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert rows[0].split(",") == ["epoch", "loss", "lr", "val_loss"] and len(rows) == 4
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_schedules_by_hand():
    p = {"w": np.zeros(2)}
    opt = optim.SGD(p, lr=1.0)
    st = schedules.StepLR(opt, step_size=2, gamma=0.5)
    assert [st.step() for _ in range(4)] == [1.0, 0.5, 0.5, 0.25]
    opt.lr = 1.0
    ex = schedules.ExponentialLR(opt, gamma=0.5)
    assert [ex.step() for _ in range(2)] == [0.5, 0.25]
    opt.lr = 2.0
    inv = schedules.InverseTimeDecay(opt, decay=1.0)
    assert [inv.step() for _ in range(3)] == [1.0, 2 / 3, 0.5]
    opt.lr = 1.0
    cos = schedules.CosineLR(opt, total_epochs=5, warmup_epochs=1, min_lr=0.0)
    lrs = [cos.lr_at(e) for e in range(6)]
    np.testing.assert_allclose(lrs, [1.0, 1.0, 0.8535534, 0.5, 0.1464466, 0.0], atol=1e-6)
    cos2 = schedules.CosineLR(opt, total_epochs=4, warmup_epochs=2)
    assert cos2.lr_at(0) == 0.5 and cos2.lr_at(1) == 1.0


def test_reduce_on_plateau_matches_torch():
    torch = pytest.importorskip("torch")
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    p = {"w": np.zeros(2)}
    ours = schedules.ReduceLROnPlateau(optim.SGD(p, lr=1.0), factor=0.5, patience=1,
                                       cooldown=1, min_delta=0.0, min_lr=0.1)
    t = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([t], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, factor=0.5, patience=1,
                                                        cooldown=1, threshold=0.0, min_lr=0.1)
    for v in values:
        ours.step(v)
        theirs.step(v)
        assert ours.optimizer.lr == topt.param_groups[0]["lr"]


def test_schedules_in_fit_set_lr_each_epoch():
    x, y = regression_data(16)
    model = small_model()
    opt = optim.SGD(model, lr=0.1)
    h = model.fit(x, y, loss="mse", optimizer=opt, epochs=4, batch_size=16, verbose=0,
                  callbacks=[schedules.StepLR(step_size=1, gamma=0.5)])
    np.testing.assert_allclose(h.history["lr"], [0.1, 0.05, 0.025, 0.0125])


def test_callback_and_schedule_bad_arguments():
    for make, match in [
            (lambda: callbacks.EarlyStopping(patience=-1), "patience"),
            (lambda: callbacks.EarlyStopping(mode="up"), "mode"),
            (lambda: callbacks.EarlyStopping(min_delta=-1), "min_delta"),
            (lambda: schedules.StepLR(step_size=0), "step_size"),
            (lambda: schedules.ExponentialLR(gamma=0), "gamma"),
            (lambda: schedules.CosineLR(total_epochs=3, warmup_epochs=3), "warmup_epochs"),
            (lambda: schedules.ReduceLROnPlateau(factor=1.0), "factor"),
            (lambda: schedules.InverseTimeDecay(decay=-1), "decay")]:
        with pytest.raises(ValueError, match=match):
            make()
    x, y = regression_data(8)
    with pytest.raises(KeyError, match="val_loss"):
        small_model().fit(x, y, loss="mse", optimizer="sgd", verbose=0,
                          callbacks=[callbacks.EarlyStopping()])


# ----------------------------------------------------------------------------------------
# metrics and data helpers

def test_metrics():
    acc = metrics.Accuracy()
    acc.update(np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), np.array([0, 1, 1]))
    assert acc.result() == pytest.approx(2 / 3)
    acc.reset()
    acc.update(np.array([0.5, -0.2, 3.0]), np.array([1.0, 0.0, 0.0]))          # logits
    assert acc.result() == pytest.approx(2 / 3)
    mse, mae = metrics.MSE(), metrics.MAE()
    p, t = np.array([[1.0], [3.0]]), np.array([[0.0], [1.0]])
    mse.update(p, t)
    mae.update(p, t)
    assert mse.result() == 2.5 and mae.result() == 1.5
    ppl = metrics.Perplexity()
    z = np.log(np.array([[[0.5, 0.25, 0.25]], [[0.1, 0.1, 0.8]]]))             # (T=2, B=1, C)
    ppl.update(z, np.array([[0], [1]]), weights=np.array([[1], [0]]))
    assert ppl.result() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="metric must be"):
        metrics.get("auc")


def test_pad_sequences_and_batches():
    seqs = [np.ones((3, 2)), np.ones((1, 2)) * 2, np.ones((5, 2)) * 3]
    padded, lengths = data.pad_sequences(seqs, value=-1)
    assert padded.shape == (3, 5, 2) and list(lengths) == [3, 1, 5]
    assert np.all(padded[1, 1:] == -1) and np.all(padded[2] == 3)
    cut, lc = data.pad_sequences(seqs, maxlen=2)
    assert cut.shape == (3, 2, 2) and list(lc) == [2, 1, 2]
    got = list(data.batches(seqs, np.arange(3), batch_size=2, shuffle=False))
    assert got[0][0].shape == (2, 3, 2) and list(got[0][2]) == [3, 1]
    assert got[1][0].shape == (1, 5, 2)
    assert len(list(data.batches(np.zeros((5, 2)), batch_size=2, drop_last=True))) == 2
    with pytest.raises(ValueError, match="empty"):
        data.pad_sequences([np.ones((2, 1)), np.ones((0, 1))])
    with pytest.raises(ValueError, match="feature shape"):
        data.pad_sequences([np.ones((2, 1)), np.ones((2, 3))])


# ----------------------------------------------------------------------------------------
# built-in tasks (short versions) and the command

SHORT = [
    ("adding", dict(seq_len=20, hidden=32, steps=3000)),
    ("copy", dict(seq_len=5, copy_len=4, hidden=64, steps=4000)),
    ("sum-classify", dict(seq_len=20, steps=2000)),
    ("sine", dict(seq_len=20, steps=2000)),
    ("attention", dict(seq_len=60, hidden=16, steps=1500)),
]


@pytest.mark.parametrize("name,opts", SHORT)
def test_task_short_version_reaches_its_target(name, opts):
    task = tasks.get_task(name, **opts)
    result, model, history = tasks.run(task, verbose=0, seed=0)
    assert result["solved"], result
    assert history.stop_reason.startswith("target reached")


def test_attention_task_reports_where_the_model_looks():
    task = tasks.get_task("attention", seq_len=60, hidden=16, steps=1500)
    result, model, history = tasks.run(task, verbose=0, seed=0)
    assert result["solved"], result
    assert result["attention_on_marker"] > 0.5            # uniform would be 1/60
    lines = result["attention_map"].split("\n")
    assert len(lines) == 2 * task.heat_rows
    for row, mark in zip(lines[::2], lines[1::2]):
        assert row.startswith("|") and row.endswith("|") and len(row) == 52
        # the darkest column is where the caret points
        assert row.index("@") == mark.index("^"), (row, mark)


def test_heat_map_layout():
    w = np.zeros((2, 10))
    w[0, 3], w[1, 9] = 1.0, 1.0
    text = tasks.heat_map(w, np.array([3, 9]), width=5)
    assert text.split("\n") == ["| @   |", "  ^ step 3", "|    @|", "     ^ step 9"]


def test_charlm_short_version(tmp_path):
    text = "the cat sat on the mat. the dog sat on the log. " * 40
    path = tmp_path / "t.txt"
    path.write_text(text)
    task = tasks.get_task("charlm", text=str(path), seq_len=20, batch_size=8, hidden=64,
                          steps=1500, sample=60)
    result, model, history = tasks.run(task, verbose=0, seed=0)
    assert result["solved"], result
    assert result["value"] < 0.8 * result["baseline"]
    assert len(result["sample"]) == 60 and set(result["sample"]) <= set(text)


def test_train_command_json_and_save(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fastrnn", "train", "sine", "--seq-len", "10", "--steps", "100",
         "--json", "--save", str(tmp_path / "m.fastrnn"), "--keep-going"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["task"] == "sine" and result["steps"] == 100
    assert result["value_epoch"] == result["epochs"] == 1
    assert fastrnn.load(tmp_path / "m.fastrnn").num_parameters() == result["parameters"]


def test_train_command_threads_option():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, fastrnn.__main__ as m, fastrnn; "
         "rc = m.main(sys.argv[1:]); print('threads', fastrnn.get_num_threads())",
         "train", "sine", "--seq-len", "5", "--steps", "100", "-q", "--threads", "1"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "threads 1"


@pytest.mark.parametrize("args,match", [
    (["charlm"], "needs a text file"),
    (["adding", "--text", "x"], "--text is for the charlm task"),
    (["adding", "--lr", "-1"], "lr must be"),
    (["adding", "--seq-len", "1"], "seq_len >= 2"),
    (["charlm", "--text", "/nonexistent/file"], "No such file"),
])
def test_train_command_errors(args, match):
    out = subprocess.run([sys.executable, "-m", "fastrnn", "train", *args, "-q"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and match in out.stderr, out.stderr


def test_validation_metrics_count_only_the_validation_set():
    # lr = 0: the model never changes.  Training labels are the opposite of its predictions
    # (0% right), validation labels are its predictions (100% right); val_mse targets are
    # its outputs exactly (MSE 0).  The training counts must not leak into val_*.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 5, 3)).astype(np.float32)
    clf = fastrnn.Sequential([L.GRU(3, 8, batch_first=True, seed=0),
                              L.LastStep(batch_first=True), L.Dense(8, 2, seed=0)])
    pred = clf.predict(x).argmax(axis=1)
    h = clf.fit(x, 1 - pred, loss="cross_entropy", optimizer=optim.SGD(clf, lr=0.0),
                epochs=2, batch_size=16, validation_data=(x, pred), metrics=["accuracy"],
                verbose=0)
    assert h.history["accuracy"] == [0.0, 0.0]
    assert h.history["val_accuracy"] == [1.0, 1.0]
    assert clf.evaluate(x, pred, metrics=["accuracy"])["accuracy"] == 1.0

    reg = small_model()
    out = reg.predict(x)
    h = reg.fit(x, out + 1.0, loss="mse", optimizer=optim.SGD(reg, lr=0.0), epochs=2,
                batch_size=16, validation_data=(x, out), metrics=["mse", "mae"], verbose=0)
    np.testing.assert_allclose(h.history["mse"], [1.0, 1.0], rtol=1e-5)
    assert h.history["val_mse"] == [0.0, 0.0] and h.history["val_mae"] == [0.0, 0.0]


def test_evaluate_resets_a_metric_object_it_is_given():
    x, y = regression_data()
    model = small_model()
    m = metrics.MSE()
    m.update(np.ones(4), np.zeros(4))               # stale counts from elsewhere
    a = model.evaluate(x, y, metrics=[m])["mse"]
    b = model.evaluate(x, y, metrics=["mse"])["mse"]
    assert a == b


def test_stateful_batch_size_must_be_the_number_of_streams():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, 2000)
    x, y = data.tbptt_streams(ids, 16, 20)
    assert data.stream_batch_size(x, y) == 16
    assert data.stream_batch_size(*data.tbptt_streams(ids, 1, 20)) == 1
    assert data.stream_batch_size(rng.random((32, 5)), rng.random((32, 5))) is None

    def lm():
        return fastrnn.Sequential([L.Embedding(12, 4, seed=0),
                                   L.GRU(4, 8, batch_first=True, stateful=True, seed=0),
                                   L.Dense(8, 12, seed=0)])

    model = lm()
    with pytest.raises(ValueError, match=r"laid out as 16 parallel streams.*batch_size is 32"
                                         r".*use batch_size=16"):
        model.fit(x, y, loss="cross_entropy", optimizer="adam", batch_size=32, verbose=0)
    # the validation set's layout is checked too
    xv, yv = data.tbptt_streams(ids[:600], 4, 20)
    with pytest.raises(ValueError, match="laid out as 4 parallel streams"):
        model.fit(x, y, loss="cross_entropy", optimizer="adam", batch_size=16, verbose=0,
                  validation_data=(xv, yv), validation_batch_size=16)
    model = lm()
    h = model.fit(x, y, loss="cross_entropy", optimizer="adam", batch_size=16, verbose=0,
                  validation_data=(xv, yv), metrics=["perplexity"])
    # evaluate's default batch size follows the streams (here 4), not 256
    assert h.history["val_loss"][0] == pytest.approx(
        model.evaluate(xv, yv, loss="cross_entropy")["loss"], rel=1e-6)
    assert model.evaluate(xv, yv, loss="cross_entropy") == \
        model.evaluate(xv, yv, loss="cross_entropy", batch_size=4)
    with pytest.raises(ValueError, match="use batch_size=4"):
        model.evaluate(xv, yv, loss="cross_entropy", batch_size=256)
    assert model.predict(x).shape == (len(x), 20, 12)      # fit's batch size (16)
    with pytest.raises(ValueError, match="number of parallel streams"):
        lm().predict(x)


def test_progress_bar_fits_the_terminal_and_shows_validation(monkeypatch):
    from fastrnn import training

    class TTY(io.StringIO):
        def isatty(self):
            return True

    x, y = regression_data(32)
    for width in (120, 50, 30):
        monkeypatch.setattr(training, "_terminal_width", lambda stream: width)
        stream = TTY()
        small_model().fit(x, y, loss="mse", optimizer="sgd", batch_size=8, epochs=2,
                          validation_data=regression_data(16, seed=1), stream=stream)
        out = stream.getvalue()
        # redraws are "\r<line>\033[K" without a newline (epoch summaries end with one)
        redraws = [c.replace("\033[K", "") for c in out.split("\r") if c and "\n" not in c]
        assert len(redraws) >= 4
        assert all(len(r) < width for r in redraws), (width, redraws)
        assert any("validating" in r for r in redraws)
        assert out.count("\n") == 2 and "Epoch 2/2 - " in out


def test_history_after_ctrl_c_counts_steps_and_keeps_epochs_aligned():
    x, y = regression_data(64)
    model = small_model()

    class Interrupt(callbacks.Callback):
        def on_batch_end(self, step, logs=None):
            if self.epoch == 1 and step == 3:
                os.kill(os.getpid(), signal.SIGINT)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    stream = io.StringIO()
    h = model.fit(x, y, loss="mse", optimizer="adam", batch_size=8, epochs=5, verbose=2,
                  validation_data=regression_data(16, seed=1), callbacks=[Interrupt()],
                  stream=stream)
    assert h.steps == 8 + 3 and h.epoch == [0, 1]
    assert all(len(v) == 2 for v in h.history.values())
    assert np.isfinite(h.history["val_loss"][0]) and np.isnan(h.history["val_loss"][1])
    assert h.last_value("val_loss") == (h.history["val_loss"][0], 0)
    assert "Epoch 2/5 - stopped at step 3/8" in stream.getvalue()


def test_nan_in_padding_never_reaches_the_weights():
    # the reproducer: NaN past a row's length used to give NaN dw_ih
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 12, 4)).astype(np.float32)
    y = rng.standard_normal((64, 1)).astype(np.float32)
    lengths = np.full(64, 12)
    lengths[40] = 6
    x[40, 6:] = np.nan
    model = fastrnn.Sequential([L.LSTM(4, 16, batch_first=True, seed=0),
                                L.Pool("mean", batch_first=True), L.Dense(16, 1, seed=0)])
    h = model.fit(x, y, loss="mse", optimizer="adam", batch_size=8, lengths=lengths,
                  shuffle=False, epochs=2, verbose=0)
    assert h.stop_reason is None and h.steps == 16
    assert all(np.isfinite(v).all() for v in model.parameters().values())


@pytest.mark.parametrize("clip", [None, 1.0])
def test_non_finite_gradient_is_never_applied(clip):
    x, y = regression_data(32)
    x[20, 2, 0] = np.inf                # a valid step: the loss may stay finite, dW is not
    model = small_model()
    before = {}

    class Snapshot(callbacks.Callback):
        def on_batch_end(self, step, logs=None):
            before.update(model.state_dict())

    with pytest.warns(RuntimeWarning, match=r"non-finite (gradient|loss) .* epoch 1, step 3"):
        h = model.fit(x, y, loss="mse", optimizer="sgd", batch_size=8, epochs=2,
                      shuffle=False, clip_norm=clip, verbose=0, callbacks=[Snapshot()])
    assert h.steps == 2 and "keeps the weights from before this step" in h.stop_reason
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_grad_norm_matches_clip_and_flags_non_finite():
    from fastrnn import clip
    g = {"a": np.array([3.0, 4.0]), "b": np.array([[12.0]])}
    assert clip.grad_norm(g) == 13.0 and clip.grad_norm(g, norm_type=float("inf")) == 12.0
    assert clip.clip_grad_norm({k: v.copy() for k, v in g.items()}, 100.0) == 13.0
    g["b"][0, 0] = np.nan
    assert np.isnan(clip.grad_norm(g)) and np.isnan(clip.grad_norm(g, float("inf")))
