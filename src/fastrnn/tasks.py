"""Built-in training tasks for ``fastrnn train``, generated in-process (no downloads).

Each task makes its data, builds a model, names its loss/metrics, a baseline and a target,
and reports the final metrics:

- adding: the adding problem (Hochreiter & Schmidhuber 1997; as in Le et al. 2015 and
  Arjovsky et al. 2016).  Inputs are (value, marker) pairs, values U(0, 1), one marker in each
  half of the sequence; the target is the sum of the two marked values.  Predicting 1 always
  gives MSE 1/6 = 0.167 (the baseline); solved means MSE < 0.01.
- copy: the copy-memory task (Arjovsky et al. 2016): `copy_len` (10) symbols from {1..8},
  `seq_len` blanks with a delimiter (9) at the last of them, then the net must output the
  symbols.  The memoryless baseline predicts blanks and then a uniform guess: cross-entropy
  copy_len log 8 / (seq_len + 2 copy_len); solved means below a quarter of it.
- sum-classify: T numbers U(0, 1); the label is whether their sum exceeds T/2 (many-to-one
  binary classification; chance is 50%).
- sine: noisy sine waves (random frequency and phase, noise sd 0.1); predict the next clean
  value from a window (many-to-one regression).  Baseline: repeat the last observed value.
- charlm: a character-level language model on a text file, stateful truncated BPTT;
  perplexity against the unigram (character frequency) model; prints a sample.
- attention: (value, marker) pairs as in adding, one marker anywhere in 200 steps; the label
  is the sign of the marked value.  LSTM + attention pooling; chance is 50%, solved means
  accuracy >= 0.95.  Reports the share of attention on the marked step and prints the
  attention weights of a few validation sequences as a text heat map.
"""
import math

import numpy as np

from fastrnn import layers as L
from fastrnn.callbacks import Callback
from fastrnn.data import tbptt_streams
from fastrnn.models import Sequential

__all__ = ["TASKS", "get_task"]

_CELLS = {"lstm": L.LSTM, "gru": L.GRU, "rnn": L.RNN}


# the recurrent layers' regularizer options a task passes on (fastrnn train --layer-norm ...)
REGULARIZERS = dict(layer_norm=False, input_dropout=0.0, recurrent_dropout=0.0,
                    weight_drop=0.0, zoneout=0.0)


def _recurrent(cell, I, H, num_layers, dtype, seed, regs=None, **kw):
    cls = _CELLS[cell]
    extra = {"unit_forget_bias": True} if cell == "lstm" else {}
    return cls(I, H, num_layers=num_layers, batch_first=True, dtype=dtype, seed=seed,
               **extra, **(regs or {}), **kw)


def _many_to_one(cell, I, H, num_layers, out, dtype, seed, regs=None):
    return Sequential([_recurrent(cell, I, H, num_layers, dtype, seed, regs),
                       L.LastStep(batch_first=True), L.Dense(H, out, dtype=dtype, seed=seed)])


class Task:
    name = None
    loss = None
    metrics = ()
    target_metric = "val_loss"          # the value the target is about
    defaults = dict(seq_len=100, cell="lstm", hidden=64, layers=1, optimizer="adam", lr=1e-2,
                    clip_norm=1.0, batch_size=32, steps=4000, **REGULARIZERS)
    steps_per_epoch = 100
    stop_at_target = True                # stop after the first epoch that meets the target

    def __init__(self, **options):
        self.options = dict(self.defaults)
        self.options.update({k: v for k, v in options.items() if v is not None})

    def regs(self):
        """The regularizer options that differ from the defaults (for the recurrent layer)."""
        return {k: self.options[k] for k, v in REGULARIZERS.items() if self.options[k] != v}

    def __getattr__(self, name):
        try:
            return self.__dict__["options"][name]
        except KeyError:
            raise AttributeError(name) from None

    n_val = 1000                         # validation samples

    def n_train(self):
        return self.steps_per_epoch * self.batch_size

    def data(self, rng, dtype):
        """Training set (steps_per_epoch batches) and validation set, from `generate`."""
        x, y = self.generate(self.n_train(), rng, dtype)
        return dict(x=x, y=y, val=self.generate(self.n_val, rng, dtype))

    def epochs(self):
        return max(1, math.ceil(self.steps / self.steps_per_epoch))

    def report(self, model, history, data):
        """The final metrics: the target metric from the last epoch that measured it
        (``value_epoch``, 1-based; an epoch cut short by Ctrl-C is not validated)."""
        value, epoch = history.last_value(self.target_metric)
        return {"task": self.name, "metric": self.metric_name, "value": float(value),
                "value_epoch": None if epoch is None else epoch + 1,
                "baseline": self.baseline(data), "target": self.target(data),
                "solved": epoch is not None and self.solved(float(value), data)}

    def solved(self, value, data):
        return value < self.target(data)


class Adding(Task):
    name = "adding"
    summary = "sum of the two marked values in a sequence of 100 (MSE < 0.01)"
    loss = "mse"
    metric_name = "val_mse"

    def generate(self, n, rng, dtype=np.float32):
        T = self.seq_len
        if T < 2:
            raise ValueError(f"the adding problem needs seq_len >= 2, got {T}")
        x = np.zeros((n, T, 2), dtype)
        x[:, :, 0] = rng.random((n, T))
        rows = np.arange(n)
        first = rng.integers(0, T // 2, n)
        second = rng.integers(T // 2, T, n)
        x[rows, first, 1] = 1
        x[rows, second, 1] = 1
        y = (x[rows, first, 0] + x[rows, second, 0])[:, None].astype(dtype)
        return x, y

    def build(self, dtype, seed):
        return _many_to_one(self.cell, 2, self.hidden, self.layers, 1, dtype, seed, self.regs())

    def baseline(self, data):
        return 1 / 6

    def target(self, data):
        return 0.01


class Copy(Task):
    """Default cell GRU: on this task the GRU gets below a quarter of the baseline within a
    minute here, while an LSTM of the same size was still at 0.6x the baseline after 3000
    steps (measured; --cell lstm to see it)."""

    name = "copy"
    summary = "recall 10 symbols after a delay of 10 (cross-entropy < 1/4 of memoryless)"
    loss = "cross_entropy"
    metrics = ("accuracy",)
    metric_name = "val_cross_entropy"
    defaults = dict(Task.defaults, seq_len=10, copy_len=10, cell="gru", hidden=128,
                    steps=4000, lr=5e-3, batch_size=64)

    def generate(self, n, rng, dtype=np.float32):
        T, k = self.seq_len, self.copy_len
        if T < 1:
            raise ValueError(f"the copy task needs seq_len >= 1, got {T}")
        if k < 1:
            raise ValueError(f"the copy task needs copy_len >= 1, got {k}")
        total = T + 2 * k
        symbols = rng.integers(1, 9, (n, k))
        ids = np.zeros((n, total), np.int64)
        ids[:, :k] = symbols
        ids[:, k + T - 1] = 9                                # delimiter: start recalling
        x = np.eye(10, dtype=dtype)[ids]                     # one-hot (n, total, 10)
        y = np.zeros((n, total), np.int64)
        y[:, -k:] = symbols
        return x, y

    def build(self, dtype, seed):
        return Sequential([_recurrent(self.cell, 10, self.hidden, self.layers, dtype, seed,
                                      self.regs()),
                           L.Dense(self.hidden, 10, dtype=dtype, seed=seed)])

    def baseline(self, data):
        k = self.copy_len
        return k * math.log(8) / (self.seq_len + 2 * k)

    def target(self, data):
        return 0.25 * self.baseline(data)

    def report(self, model, history, data):
        out = super().report(model, history, data)
        xv, yv = data["val"]                   # accuracy on the recalled symbols only
        k = self.copy_len
        pred = model.predict(xv).argmax(axis=-1)[:, -k:]
        out["recall_accuracy"] = float((pred == yv[:, -k:]).mean())
        return out


class SumClassify(Task):
    name = "sum-classify"
    summary = "is the sum of 50 U(0,1) numbers above 25? (accuracy >= 0.9)"
    loss = "cross_entropy"
    metrics = ("accuracy",)
    metric_name = "val_accuracy"
    target_metric = "val_accuracy"
    defaults = dict(Task.defaults, seq_len=50, steps=1000)

    n_val = 2000

    def generate(self, n, rng, dtype=np.float32):
        T = self.seq_len
        x = rng.random((n, T, 1)).astype(dtype)
        y = (x.sum(axis=(1, 2)) > T / 2).astype(np.int64)
        return x, y

    def build(self, dtype, seed):
        return _many_to_one(self.cell, 1, self.hidden, self.layers, 2, dtype, seed, self.regs())

    def baseline(self, data):
        return 0.5

    def target(self, data):
        return 0.9

    def solved(self, value, data):
        return value >= self.target(data)


class Sine(Task):
    name = "sine"
    summary = "next value of a noisy sine wave (MSE < 1/4 of repeating the last value)"
    loss = "mse"
    metric_name = "val_mse"
    defaults = dict(Task.defaults, seq_len=50, hidden=32, steps=600)
    noise = 0.1

    n_val = 2000

    def generate(self, n, rng, dtype=np.float32):
        T = self.seq_len
        freq = rng.uniform(0.05, 0.3, (n, 1))
        phase = rng.uniform(0, 2 * np.pi, (n, 1))
        t = np.arange(T + 1)[None, :]
        clean = np.sin(freq * t + phase)
        x = (clean[:, :T] + self.noise * rng.standard_normal((n, T)))[:, :, None]
        y = clean[:, T:T + 1]
        return x.astype(dtype), y.astype(dtype)

    def build(self, dtype, seed):
        return _many_to_one(self.cell, 1, self.hidden, self.layers, 1, dtype, seed, self.regs())

    def baseline(self, data):
        xv, yv = data["val"]
        return float(np.mean((xv[:, -1, :] - yv) ** 2))       # repeat the last value

    def target(self, data):
        return 0.25 * self.baseline(data)


class CharLM(Task):
    name = "charlm"
    summary = "character language model on --text PATH, stateful truncated BPTT"
    loss = "cross_entropy"
    metrics = ("perplexity",)
    metric_name = "val_perplexity"
    target_metric = "val_perplexity"
    defaults = dict(Task.defaults, seq_len=50, hidden=128, batch_size=32, steps=600, lr=5e-3,
                    clip_norm=5.0, embed=32, sample=200, temperature=0.7, text=None)
    stop_at_target = False               # a language model keeps improving: use every step

    def data(self, rng, dtype):
        if not self.text:
            raise ValueError("the charlm task needs a text file: fastrnn train charlm --text "
                             "PATH")
        with open(self.text, encoding="utf-8", errors="replace") as f:
            text = f.read()
        vocab = sorted(set(text))
        if len(vocab) < 2:
            raise ValueError(f"{self.text} must contain at least two distinct characters")
        index = {c: i for i, c in enumerate(vocab)}
        ids = np.array([index[c] for c in text], np.int64)
        B, T = self.batch_size, self.seq_len
        split = int(len(ids) * 0.9)
        train, val = ids[:split], ids[split:]
        if len(val) < 2 * T + 2:                 # short text: validate on a slice of the train
            val = ids[-(2 * T + 2):]
        x, y = tbptt_streams(train, B, T)
        bv = max(1, min(B, (len(val) - 1) // T))
        xv, yv = tbptt_streams(val, bv, T)
        counts = np.bincount(train, minlength=len(vocab)) + 1.0
        log_p = np.log(counts / counts.sum())
        unigram = float(np.exp(-log_p[yv].mean()))
        self.steps_per_epoch = max(1, len(x) // B)
        return dict(x=x, y=y, val=(xv, yv), vocab=vocab, unigram=unigram, val_batch=bv,
                    text=text)

    def build(self, dtype, seed, vocab_size=None):
        V = vocab_size
        return Sequential([
            L.Embedding(V, self.embed, dtype=dtype, seed=seed),
            _recurrent(self.cell, self.embed, self.hidden, self.layers, dtype, seed,
                       self.regs(), stateful=True),
            L.Dense(self.hidden, V, dtype=dtype, seed=seed)])

    def baseline(self, data):
        return data["unigram"]

    def target(self, data):
        return 0.8 * data["unigram"]

    def generate_text(self, model, data, rng, length=None, prime=None):
        """Generate `length` characters after `prime` (default: the text's first line)."""
        vocab = data["vocab"]
        index = {c: i for i, c in enumerate(vocab)}
        length = self.options["sample"] if length is None else length
        if prime is None:
            prime = data["text"][:max(1, min(40, data["text"].find("\n") if "\n" in
                                                 data["text"][1:] else 40))]
        model.eval()
        for _, layer in model.named_layers():
            if getattr(layer, "stateful", False):
                layer.reset_states()
        ids = np.array([[index.get(c, 0) for c in prime]])
        logits = model.forward(ids)[:, -1]
        out = []
        for _ in range(length):
            z = logits[0].astype(np.float64) / max(self.temperature, 1e-6)
            p = np.exp(z - z.max())
            p /= p.sum()
            nxt = int(rng.choice(len(vocab), p=p))
            out.append(vocab[nxt])
            logits = model.forward(np.array([[nxt]]))[:, -1]
        for _, layer in model.named_layers():
            if getattr(layer, "stateful", False):
                layer.reset_states()
        return prime, "".join(out)


class AttentionTask(Task):
    """Where does the model look?  The label (is the marked value positive?) depends on one
    step anywhere in a long sequence; attention pooling over the LSTM's outputs can put its
    weight there (Raffel & Ellis 2015)."""

    name = "attention"
    summary = "sign of the one marked value among 200 steps, LSTM + attention (accuracy >= 0.95)"
    loss = "cross_entropy"
    metrics = ("accuracy",)
    metric_name = "val_accuracy"
    target_metric = "val_accuracy"
    defaults = dict(Task.defaults, seq_len=200, hidden=32, steps=1500)
    heat_rows = 4

    def generate(self, n, rng, dtype=np.float32):
        T = self.seq_len
        if T < 1:
            raise ValueError(f"the attention task needs seq_len >= 1, got {T}")
        x = np.zeros((n, T, 2), dtype)
        x[:, :, 0] = rng.uniform(-1, 1, (n, T))
        marked = rng.integers(0, T, n)
        x[np.arange(n), marked, 1] = 1
        y = (x[np.arange(n), marked, 0] > 0).astype(np.int64)
        return x, y

    def build(self, dtype, seed):
        H = self.hidden
        return Sequential([_recurrent(self.cell, 2, H, self.layers, dtype, seed, self.regs()),
                           L.Attention(H, score="general", dtype=dtype, seed=seed),
                           L.Dense(H, 2, dtype=dtype, seed=seed)])

    def baseline(self, data):
        return 0.5

    def target(self, data):
        return 0.95

    def solved(self, value, data):
        return value >= self.target(data)

    def attention_weights(self, model, x):
        """The attention layer's weights (n, T) for inputs x (n, T, 2), eval mode."""
        h = model.layers[0].forward(x, training=False)
        h = h[0] if isinstance(h, tuple) else h
        return model.layers[1].forward(h, training=False)[1]

    def report(self, model, history, data):
        out = super().report(model, history, data)
        xv, _ = data["val"]
        w = self.attention_weights(model, xv)
        marked = xv[:, :, 1].argmax(axis=1)
        out["attention_on_marker"] = float(w[np.arange(len(xv)), marked].mean())
        out["attention_map"] = heat_map(w[:self.heat_rows], marked[:self.heat_rows])
        # for --plot (not part of the printed or JSON result)
        out["_attention"] = (w[:self.heat_rows], marked[:self.heat_rows])
        return out


_SHADES = " .:-=+*#%@"


def heat_map(weights, marked, width=50):
    """Text heat map of attention weights (rows, T): each row squeezed to `width` columns
    (the weight summed over each column's steps), shaded by its share of the row's largest
    column; a ``^`` line below marks the true position."""
    rows = []
    T = weights.shape[1]
    width = min(width, T)
    edges = np.linspace(0, T, width + 1).astype(int)
    for w, m in zip(weights, marked):
        cols = np.add.reduceat(w, edges[:-1])
        level = np.minimum((cols / max(cols.max(), 1e-30) * (len(_SHADES) - 1)).round(),
                           len(_SHADES) - 1).astype(int)
        col = int(np.searchsorted(edges, m, side="right") - 1)
        rows.append("|" + "".join(_SHADES[k] for k in level) + "|")
        rows.append(" " + " " * col + "^" + f" step {int(m)}")
    return "\n".join(rows)


TASKS = {t.name: t for t in (Adding, Copy, SumClassify, Sine, CharLM, AttentionTask)}


def get_task(name, **options):
    """The built-in task `name` (see TASKS) with `options` (seq_len, hidden, steps, ...)
    over its defaults."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name](**options)


class _StopAtTarget(Callback):
    """Stop after the first epoch whose validation metric meets the task's target."""

    def __init__(self, task, data):
        self.task, self.data = task, data
        self.reached_at = None

    def on_epoch_end(self, epoch, logs=None):
        value = logs.get(self.task.target_metric)
        if value is not None and self.task.solved(float(value), self.data):
            self.reached_at = epoch
            self.model.stop_training = True


def run(task, *, dtype=np.float32, seed=0, verbose=1, save=None, stream=None,
        stop_at_target=True, distributed=False):
    """Train `task` (a Task) and return ``(result dict, model, history)``.  Training stops
    after the first epoch that meets the target unless ``stop_at_target=False``.

    distributed: data-parallel over the MPI job's ranks (fastrnn.distributed): the task's
    batch is the global batch, split evenly, so the run makes the same steps as one process;
    only rank 0 saves."""
    import time

    from fastrnn import optim
    from fastrnn._io import save as save_model
    if task.cell not in _CELLS:
        raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {task.cell!r}")
    t0 = time.perf_counter()
    ctx, ranks = None, 1
    if distributed:
        from fastrnn import distributed as _dist
        ctx = _dist.init()
        ranks = ctx.size
        if task.batch_size % ranks:
            raise ValueError(f"the batch size {task.batch_size} does not split evenly over "
                             f"{ranks} ranks; pass --batch-size, a multiple of {ranks}")
    rng = np.random.default_rng(seed)
    data = task.data(rng, dtype)
    if isinstance(task, CharLM):
        model = task.build(dtype, seed, vocab_size=len(data["vocab"]))
    else:
        model = task.build(dtype, seed)
    kwargs = {"momentum": 0.9} if task.optimizer == "sgd" else {}
    opt = optim.get(task.optimizer, model, lr=task.lr, **kwargs)
    stopper = _StopAtTarget(task, data)
    history = model.fit(
        data["x"], data["y"], loss=task.loss, optimizer=opt, epochs=task.epochs(),
        callbacks=[stopper] if stop_at_target and task.stop_at_target else [],
        batch_size=task.batch_size // ranks, validation_data=data["val"],
        validation_batch_size=data.get("val_batch"), clip_norm=task.clip_norm or None,
        metrics=task.metrics, seed=seed, verbose=verbose, stream=stream, distributed=ctx)
    result = task.report(model, history, data)
    steps = history.steps
    if stopper.reached_at is not None:
        history.stop_reason = f"target reached after epoch {stopper.reached_at + 1}"
    result.update(cell=task.cell, hidden=task.hidden, layers=task.layers,
                  regularizers=task.regs(),
                  seq_len=task.seq_len, steps=steps, epochs=len(history.epoch),
                  train_loss=float(history.last()["loss"]) if history.epoch else None,
                  epochs_validated=sum(1 for v in history.history.get(task.target_metric, [])
                                       if np.isfinite(v)),
                  stop_reason=history.stop_reason, parameters=model.num_parameters())
    if isinstance(task, CharLM) and task.options["sample"]:
        prime, text = task.generate_text(model, data, rng)
        result["sample_prime"], result["sample"] = prime, text
    if distributed:
        result["ranks"] = ranks
    if save and (ctx is None or ctx.rank == 0):
        save_model(model, save)
        result["saved"] = str(save)
    result["wall_time_s"] = round(time.perf_counter() - t0, 2)
    return result, model, history
