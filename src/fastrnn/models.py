"""Models: ``Sequential`` (a chain of layers) and ``Model`` (base for custom architectures).

A custom model subclasses ``Model``, assigns its layers as attributes in ``__init__`` (they
are registered in that order: their parameters appear in ``parameters()`` / ``state_dict()``
as ``"<attribute>.<name>"``), and writes ``forward`` and ``backward`` by calling the layers'
own ``forward``/``backward`` in order and in reverse.  See the README for an encoder-decoder.
"""
import contextlib

import numpy as np

from fastrnn import training as _training
from fastrnn._io import layer_config, layer_from_config
from fastrnn.layers._base import Layer, refuse_sequence_list
from fastrnn.layers._recurrent import lengths_from_mask

__all__ = ["Model", "Sequential"]


class Model(Layer):
    """Base class of models: a Layer with ``summary()``, ``fit``, ``evaluate``, ``predict``."""

    stop_training = False

    def fit(self, x, y, *, loss, optimizer, epochs=1, batch_size=32, lengths=None,
            validation_data=None, clip_norm=None, clip_value=None, shuffle=True, callbacks=(),
            seed=None, verbose=1, metrics=(), validation_batch_size=None, stream=None,
            distributed=None):
        """Train on (x, y) with mini-batches; returns a ``History``.

        x, y: sample-major arrays (``x[i]`` is sample i; x may be a list of variable-length
        sequences, padded per batch); lengths: (N,) valid steps per sample; loss: a
        fastrnn.losses.Loss or its name; optimizer: a fastrnn.optim optimizer (or a name:
        "adam", "sgd", ...); validation_data: (x_val, y_val[, lengths_val]), evaluated after
        every epoch (val_* entries); clip_norm / clip_value: gradient clipping per step;
        callbacks: fastrnn.callbacks / fastrnn.schedules objects; seed: shuffling order;
        verbose: 0 silent, 1 progress bar (one line per epoch when not a terminal), 2 one
        line per epoch; metrics: names ("accuracy", "mse", "mae", "perplexity") or Metric
        objects; validation_batch_size: default batch_size; stream: where progress goes
        (default stderr).  Stateful models get their batches in order (no shuffling, a final partial
        batch dropped) and reset_states() at each epoch end.  Ctrl-C stops after the current
        step; a non-finite loss or gradient stops before its update, with a warning naming
        the step (``History.stop_reason``).  distributed: True (or a
        ``fastrnn.distributed.Context``) to train data-parallel over the MPI job's ranks, each
        its slice of every global batch of ``batch_size`` samples per rank (see
        ``fastrnn.distributed``; needs ``pip install "fastrnn[mpi]"``)."""
        return _training.fit(self, x, y, loss=loss, optimizer=optimizer, epochs=epochs,
                   batch_size=batch_size, lengths=lengths, validation_data=validation_data,
                   clip_norm=clip_norm, clip_value=clip_value, shuffle=shuffle,
                   callbacks=callbacks, seed=seed, verbose=verbose, metrics=metrics,
                   validation_batch_size=validation_batch_size, stream=stream,
                   distributed=distributed)

    def evaluate(self, x, y, *, loss=None, lengths=None, batch_size=None, metrics=()):
        """Mean loss and metrics over (x, y) in eval mode: a dict.  batch_size: default
        256; for a stateful model, the number of parallel streams (found from next-step data
        laid out by ``fastrnn.data.tbptt_streams``, else the batch size of the last fit)."""
        return _training.evaluate(self, x, y, loss=loss, lengths=lengths, batch_size=batch_size,
                        metrics=metrics)

    def predict(self, x, *, lengths=None, batch_size=None):
        """Outputs for x in eval mode, in batches, sample-major (batch_size as
        ``evaluate``)."""
        return _training.predict(self, x, lengths=lengths, batch_size=batch_size)

    def summary(self, input_shape=None, print_fn=print):
        """Print a table of the layers, their output shapes and parameter counts.

        Output shapes come from ``input_shape`` (for a Sequential) or from the last forward
        call; "?" where unknown."""
        rows = self._summary_rows(input_shape)
        header = ("layer", "type", "output shape", "params")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
        line = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
        out = [line.format(*header), "-" * (sum(widths) + 6)]
        out += [line.format(*map(str, r)) for r in rows]
        total = self.num_parameters()
        out += ["-" * (sum(widths) + 6), f"total parameters: {total:,}"]
        print_fn("\n".join(out))

    def _summary_rows(self, input_shape):
        rows = []
        shapes = getattr(self, "_output_shapes", {})
        for name, layer in self._layers.items():
            shape = shapes.get(name, "?")
            rows.append((name, type(layer).__name__, _shape_str(shape),
                         layer.num_parameters()))
        return rows


def _shape_str(shape):
    if isinstance(shape, tuple):
        return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
    return str(shape)


@contextlib.contextmanager
def _naming(name, layer):
    """Prefix a ValueError/TypeError raised inside a chained layer with the layer's name."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        label = f"layer {name} ({type(layer).__name__}): "
        if exc.args and isinstance(exc.args[0], str) and not exc.args[0].startswith("layer "):
            exc.args = (label + exc.args[0],) + exc.args[1:]
        raise


class Sequential(Model):
    """A chain of layers: each layer's output is the next one's input.

    ``forward(x, lengths=None, mask=None)`` passes ``lengths`` (or a prefix ``mask``,
    converted once) to the layers that use them (recurrent layers, LastStep, Pool); a
    recurrent layer's state output is dropped inside the chain.  Parameter names are
    ``"<index>.<name>"`` as in ``torch.nn.Sequential``.
    """

    def __init__(self, layers=()):
        super().__init__()
        object.__setattr__(self, "_output_shapes", {})
        for layer in layers:
            self.add(layer)

    def add(self, layer):
        """Append `layer` to the chain (returns the Sequential).  Every sequence layer of a
        chain uses one layout: a recurrent layer or a LastStep/Pool whose ``batch_first``
        differs from the layers before it is refused; LastStep/Pool with
        ``batch_first=None`` take the chain's layout."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential takes fastrnn layers, got {type(layer).__name__}")
        index = len(self._layers)
        fixed = getattr(layer, "batch_first", None)
        if fixed is not None:
            for name, other in self._layers.items():
                theirs = getattr(other, "batch_first", None)
                if theirs is not None and theirs != fixed:
                    raise ValueError(
                        f"layer {index} ({type(layer).__name__}) has batch_first={fixed} but "
                        f"layer {name} ({type(other).__name__}) has batch_first={theirs}: all "
                        f"sequence layers of a Sequential must use one layout (LastStep and "
                        f"Pool take the chain's layout when batch_first is left None)")
        setattr(self, str(index), layer)
        bf = self._batch_first()
        for other in self._layers.values():
            if hasattr(other, "_inherited_batch_first"):
                other._inherited_batch_first = bool(bf)
        return self

    @property
    def layers(self):
        """The layers in chain order (a new list)."""
        return list(self._layers.values())

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __repr__(self):
        inner = "".join(f"\n  ({name}): {layer!r}" for name, layer in self._layers.items())
        return f"Sequential({inner}\n)" if inner else "Sequential()"

    def _batch_first(self):
        """The chain's layout: its sequence layers' batch_first (None: no layer fixes it)."""
        for layer in self.layers:
            if getattr(layer, "batch_first", None) is not None:
                return layer.batch_first
        return None

    def forward(self, x, lengths=None, mask=None, *, training=None):
        """Run the chain on `x`, in the layout of its recurrent layers: (T, B, ...) or, with
        batch_first, (B, T, ...) (``fit`` / ``evaluate`` / ``predict`` take sample-major
        data and lists of sequences instead).  ``lengths`` (B,) or a prefix ``mask`` go to
        the layers that use them; ``training`` overrides the layers' mode for this call.
        Errors raised inside a layer name it ("layer 2 (Dense): ...")."""
        if not self._layers:
            raise ValueError("Sequential has no layers")
        refuse_sequence_list(x, bool(self._batch_first()))
        if mask is not None:
            if lengths is not None:
                raise ValueError("give lengths or mask, not both")
            shape = np.shape(x)
            if len(shape) < 2:
                raise ValueError(f"a mask needs x with time and batch axes, got shape {shape}")
            bf = bool(self._batch_first())
            T, B = (shape[1], shape[0]) if bf else (shape[0], shape[1])
            lengths = lengths_from_mask(mask, T, B, bf)
        self._output_shapes.clear()
        for name, layer in self._layers.items():
            with _naming(name, layer):
                lengths = layer.chain_lengths(x, lengths)
                if training is None:
                    x = layer.chain_forward(x, lengths)
                else:
                    saved = layer.training
                    layer.train(training)
                    try:
                        x = layer.chain_forward(x, lengths)
                    finally:
                        layer.train(saved)
            self._output_shapes[name] = tuple(np.shape(x))
        return x

    def backward(self, dy):
        """Gradients back through the chain (last layer first) for the last training-mode
        forward; returns the gradient w.r.t. the input (None when the first layer has none,
        e.g. Embedding) and adds the parameter gradients into ``grads``."""
        names = list(self._layers)
        for i in reversed(range(len(names))):
            with _naming(names[i], self._layers[names[i]]):
                dy = self._layers[names[i]].chain_backward(dy)
            if dy is None and i:
                raise ValueError(f"layer {names[i]} ({type(self._layers[names[i]]).__name__}) "
                                 f"has no input gradient, so it must be the first layer")
        return dy

    def output_shape(self, input_shape):
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def _summary_rows(self, input_shape):
        if input_shape is None:
            return super()._summary_rows(None)
        rows, shape = [], tuple(input_shape)
        for name, layer in self._layers.items():
            shape = layer.output_shape(shape)
            rows.append((name, type(layer).__name__, _shape_str(shape),
                         layer.num_parameters()))
        return rows

    def get_config(self):
        """The architecture as JSON-ready data: each layer's class and config."""
        return {"layers": [layer_config(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild a Sequential from ``get_config()``'s output (classes looked up among
        fastrnn's and `custom_objects`)."""
        return cls([layer_from_config(c, custom_objects) for c in config["layers"]])
