"""Whole models in from other frameworks: ``fastrnn.from_torch(module)`` and
``fastrnn.from_keras(model)``.

The converted model has the original's architecture and weights (copied), and gives the same
outputs; a module fastrnn has no equivalent for is refused with an error naming it.  torch
is imported only by these functions' callers: this module never imports it.

PyTorch modules converted:
- ``nn.RNN`` (tanh or relu), ``nn.LSTM`` (``proj_size`` included), ``nn.GRU``: every option
  (``num_layers``, ``bias``, ``batch_first``, ``dropout``, ``bidirectional``) carried over,
  to ``layers.RNN`` / ``LSTM`` / ``GRU`` with the same parameter names and layout;
- ``nn.Linear`` -> ``layers.Dense``; ``nn.Embedding`` (``padding_idx``) ->
  ``layers.Embedding``; ``nn.Dropout`` -> ``layers.Dropout``; ``nn.Tanh``, ``nn.ReLU``,
  ``nn.Sigmoid``, ``nn.Softmax(dim=-1)`` -> their layers; ``nn.Identity`` is dropped;
- ``nn.Sequential`` of those -> ``Sequential``.  torch cannot run a recurrent module inside
  ``nn.Sequential`` as is (it returns a tuple); fastrnn's Sequential passes the output
  sequence on, which is what the usual ``out, _ = self.lstm(x)`` wrapper does.  Parameter
  names are ``"<index>.<name>"`` over the converted chain: torch's own for a flat
  ``nn.Sequential`` without ``nn.Identity`` (which is dropped) or nested Sequentials.

Keras 3 models converted (``keras.Sequential``, a functional ``keras.Model`` that is a
chain of layers, or one layer): ``InputLayer`` (dropped), ``Masking``, ``Embedding``
(``mask_zero`` included), ``SimpleRNN`` (tanh or relu), ``LSTM``, ``GRU`` (either
``reset_after``), ``Bidirectional`` of those (each ``merge_mode``), ``Dense`` and
``TimeDistributed(Dense)`` with their activations, ``Activation``, ``Dropout``.  Keras's
sequences are batch-major, so the recurrent layers get ``batch_first=True``; ``dropout`` /
``recurrent_dropout`` become ``input_dropout`` / ``recurrent_dropout`` (training only, as in
Keras).  Where Keras's semantics differ from fastrnn's defaults the converted layers keep
Keras's:

- a mask (``Masking``, ``Embedding(mask_zero=True)``) becomes the lengths the later layers
  use (fastrnn needs each row's padding after its valid steps; other masks are refused when
  the model runs);
- a one-directional layer repeats its last valid output at padded steps unless it has
  ``zero_output_for_mask=True`` (the fastrnn layer gets the same option);
- a ``go_backwards`` layer returns its outputs in processing order over the whole padded
  axis (``go_backwards_order="full"``); stacked ``go_backwards`` layers each become one
  fastrnn layer, so the second walks forward in time as in Keras;
- each ``Bidirectional`` becomes one single-layer bidirectional fastrnn layer with its own
  ``merge_mode``, so stacked ``merge_mode="sum"`` layers merge inside every layer as in
  Keras.

Refused with the layer's name: ``stateful`` layers, other activations and other layers.

Not converted: custom ``nn.Module`` classes and Keras models that are not a chain (several
inputs or outputs, a layer called on several tensors, custom layers).  ONNX files:
``fastrnn.onnx.export`` and ``fastrnn.onnx.load``.
"""
import numpy as np

from fastrnn import layers as L
from fastrnn.models import Sequential

__all__ = ["from_torch", "from_keras"]


def _dtype(module, name):
    dtypes = {str(p.dtype) for p in module.parameters()}
    if not dtypes:
        return np.float32
    if len(dtypes) > 1:
        raise TypeError(f"{name}: parameters of mixed dtypes {sorted(dtypes)}")
    dt = dtypes.pop().replace("torch.", "")
    if dt not in ("float32", "float64"):
        raise TypeError(f"{name}: fastrnn computes in float32 or float64, the module's "
                        f"parameters are {dt}")
    return np.dtype(dt)


def _state(module):
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _recurrent(module, kind, name):
    dtype = _dtype(module, name)
    kw = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
              dropout=float(module.dropout), bidirectional=module.bidirectional, dtype=dtype)
    if kind == "RNN":
        layer = L.RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity,
                      **kw)
    elif kind == "LSTM":
        if getattr(module, "proj_size", 0):
            kw["proj_size"] = module.proj_size
        layer = L.LSTM(module.input_size, module.hidden_size, **kw)
    else:
        layer = L.GRU(module.input_size, module.hidden_size, **kw)
    layer.load_state_dict(_state(module))
    return layer


def _convert(module, name):
    kind = type(module).__name__
    mod = type(module).__module__
    if not mod.startswith("torch.nn"):
        raise TypeError(f"from_torch: {name} is a {mod}.{kind}, not one of torch.nn's modules "
                        f"fastrnn converts (see fastrnn.convert)")
    if kind in ("RNN", "LSTM", "GRU"):
        return [_recurrent(module, kind, name)]
    if kind == "Linear":
        layer = L.Dense(module.in_features, module.out_features, bias=module.bias is not None,
                        dtype=_dtype(module, name))
        layer.load_state_dict(_state(module))
        return [layer]
    if kind == "Embedding":
        if module.max_norm is not None or module.sparse:
            raise TypeError(f"from_torch: {name} (nn.Embedding) uses max_norm or sparse, "
                            f"which fastrnn's Embedding does not have")
        layer = L.Embedding(module.num_embeddings, module.embedding_dim,
                            padding_idx=module.padding_idx, dtype=_dtype(module, name))
        layer.load_state_dict(_state(module))
        return [layer]
    if kind == "Dropout":
        return [L.Dropout(module.p)]
    if kind in ("Tanh", "ReLU", "Sigmoid"):
        return [getattr(L, kind)()]
    if kind == "Softmax":
        if module.dim not in (-1, None):
            raise TypeError(f"from_torch: {name} (nn.Softmax) over dim={module.dim}; fastrnn's "
                            f"Softmax layer is over the last axis (dim=-1)")
        return [L.Softmax()]
    if kind == "Identity":
        return []
    if kind == "Sequential":
        out = []
        for child_name, child in module.named_children():
            out += _convert(child, f"{name}.{child_name}")
        return out
    raise TypeError(f"from_torch: {name} is a torch.nn.{kind}, which fastrnn cannot convert "
                    f"(supported: RNN, LSTM, GRU, Linear, Embedding, Dropout, Tanh, ReLU, "
                    f"Sigmoid, Softmax, Identity, Sequential)")


def from_torch(module):
    """The fastrnn equivalent of a torch.nn module, with its weights (copied).

    An ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` gives the matching recurrent layer (called like
    the module: ``y, state = layer.forward(x, state)``); any other supported module, or an
    ``nn.Sequential``, gives a ``Sequential``.  The model is in training mode if the module
    is (``model.eval()`` as in torch).  Raises TypeError naming the first module fastrnn
    cannot convert."""
    kind = type(module).__name__
    if kind in ("RNN", "LSTM", "GRU") and type(module).__module__.startswith("torch.nn"):
        layer = _recurrent(module, kind, kind)
        return layer.train() if module.training else layer.eval()
    model = Sequential(_convert(module, kind))
    return model.train() if module.training else model.eval()



# ---- Keras -------------------------------------------------------------------------------

_KERAS_ACT = {"linear": None, "tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid",
              "softmax": "softmax"}


def _keras_refuse(layer, what):
    raise TypeError(f"from_keras: layer {layer.name!r} ({type(layer).__name__}) {what}")


def _keras_act(layer, name):
    name = name if isinstance(name, str) else getattr(name, "__name__", str(name))
    if name not in _KERAS_ACT:
        _keras_refuse(layer, f"uses the activation {name!r}")
    return _KERAS_ACT[name]


def _keras_dtype(layer):
    w = layer.get_weights()
    return np.float64 if w and w[0].dtype == np.float64 else np.float32


def _keras_rnn(layer, wrapper=None, merge_mode=None):
    """A Keras SimpleRNN / LSTM / GRU (inside Bidirectional when `wrapper`) -> a fastrnn
    recurrent layer with its weights and Keras's padded-step semantics."""
    kind = type(layer).__name__
    who = wrapper or layer
    cfg = layer.get_config()
    if cfg.get("stateful"):
        _keras_refuse(who, "is stateful (make a fastrnn layer with stateful=True and load the "
                           "weights with from_keras_weights)")
    if kind == "SimpleRNN":
        act = _keras_act(who, cfg["activation"])
        if act not in ("tanh", "relu"):
            _keras_refuse(who, f"uses activation {cfg['activation']!r}")
    else:
        if _keras_act(who, cfg["activation"]) != "tanh" or \
                _keras_act(who, cfg["recurrent_activation"]) != "sigmoid":
            _keras_refuse(who, "uses activations other than tanh and sigmoid")
    weights = (wrapper or layer).get_weights()
    I = weights[0].shape[0]
    H = cfg["units"]
    kw = dict(batch_first=True, bias=cfg["use_bias"], return_sequences=cfg["return_sequences"],
              dtype=_keras_dtype(wrapper or layer),
              input_dropout=float(cfg.get("dropout", 0.0)),
              recurrent_dropout=float(cfg.get("recurrent_dropout", 0.0)))
    if wrapper is not None:
        # Keras's Bidirectional writes zeros at padded steps and aligns the backward outputs
        # with time, as fastrnn's bidirectional layers do
        kw.update(bidirectional=True, merge_mode=merge_mode)
    else:
        # Keras: padded steps repeat the last output unless zero_output_for_mask, and a
        # go_backwards layer's outputs come in processing order over the padded axis
        kw["zero_output_for_mask"] = bool(cfg.get("zero_output_for_mask", False))
        if cfg.get("go_backwards"):
            kw.update(go_backwards=True, go_backwards_order="full")
    if kind == "SimpleRNN":
        out = L.RNN(I, H, nonlinearity=act, **kw)
    elif kind == "LSTM":
        out = L.LSTM(I, H, **kw)
    else:
        out = L.GRU(I, H, reset_after=cfg["reset_after"], **kw)
    out.from_keras_weights(weights)
    return out


def _keras_layer(layer):
    kind = type(layer).__name__
    if kind == "InputLayer":
        return []
    if kind in ("Sequential", "Functional", "Model"):
        return [converted for inner in _keras_chain(layer) for converted in _keras_layer(inner)]
    if kind == "Masking":
        return [L.Masking(float(layer.get_config()["mask_value"]))]
    if kind in ("SimpleRNN", "LSTM", "GRU"):
        return [_keras_rnn(layer)]
    if kind == "Bidirectional":
        fwd, bwd = layer.forward_layer, layer.backward_layer
        if type(fwd) is not type(bwd) or not bwd.get_config().get("go_backwards") or \
                {k: v for k, v in fwd.get_config().items() if k not in ("name", "go_backwards")} \
                != {k: v for k, v in bwd.get_config().items() if k not in ("name",
                                                                            "go_backwards")}:
            _keras_refuse(layer, "has a backward layer that is not the forward one's mirror")
        if layer.merge_mode not in ("concat", "sum", "ave", "mul"):
            _keras_refuse(layer, f"has merge_mode={layer.merge_mode!r}")
        if type(fwd).__name__ not in ("SimpleRNN", "LSTM", "GRU"):
            _keras_refuse(layer, f"wraps a {type(fwd).__name__}")
        return [_keras_rnn(fwd, wrapper=layer, merge_mode=layer.merge_mode)]
    if kind == "TimeDistributed":
        if type(layer.layer).__name__ != "Dense":
            _keras_refuse(layer, f"wraps a {type(layer.layer).__name__}")
        return _keras_layer(layer.layer)
    if kind == "Dense":
        cfg = layer.get_config()
        w = layer.get_weights()
        dense = L.Dense(w[0].shape[0], cfg["units"], bias=cfg["use_bias"],
                        activation=_keras_act(layer, cfg["activation"]),
                        dtype=_keras_dtype(layer))
        dense.load_state_dict({"weight": w[0].T, **({"bias": w[1]} if cfg["use_bias"] else {})})
        return [dense]
    if kind == "Activation":
        act = _keras_act(layer, layer.get_config()["activation"])
        return [] if act is None else [{"tanh": L.Tanh, "relu": L.ReLU, "sigmoid": L.Sigmoid,
                                         "softmax": L.Softmax}[act]()]
    if kind == "Dropout":
        return [L.Dropout(float(layer.get_config()["rate"]))]
    if kind == "Embedding":
        cfg = layer.get_config()
        w = layer.get_weights()[0]
        emb = L.Embedding(w.shape[0], w.shape[1], dtype=_keras_dtype(layer),
                          mask_zero=bool(cfg.get("mask_zero")))
        emb.load_state_dict({"weight": w})
        return [emb]
    _keras_refuse(layer, "has no fastrnn equivalent here (see fastrnn.convert)")


def _keras_chain(model):
    """The layers of a Keras Sequential model, or of a functional model that is a chain (one
    input, one output, each layer called once on the previous one's output), in order."""
    kind = type(model).__name__
    if kind == "Sequential":
        return list(model.layers)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TypeError(f"from_keras: model {model.name!r} has {len(model.inputs)} inputs and "
                        f"{len(model.outputs)} outputs; fastrnn converts chains of layers (one "
                        f"input, one output)")
    chain, tensor = [], model.outputs[0]
    while True:
        op, node_index, _ = tensor._keras_history
        if type(op).__name__ == "InputLayer":
            break
        node = op._inbound_nodes[node_index]
        # Keras passes the propagated mask as a keyword tensor: the converted chain carries
        # it as lengths, so only the other tensors count
        mask = node.arguments.kwargs.get("mask")
        tensors = [t for t in node.arguments.keras_tensors if t is not mask]
        args = node.arguments.args
        if len(tensors) != 1 or len(args) != 1 or args[0] is not tensors[0]:
            raise TypeError(f"from_keras: layer {op.name!r} ({type(op).__name__}) takes "
                            f"{len(tensors)} tensors in model {model.name!r}; fastrnn converts "
                            f"chains of layers, each called on the previous one's output")
        chain.append(op)
        tensor = args[0]
    if tensor is not model.inputs[0]:
        raise TypeError(f"from_keras: model {model.name!r} is not a chain from its input")
    return chain[::-1]


def from_keras(model):
    """The fastrnn ``Sequential`` equivalent of a Keras 3 model (``keras.Sequential``, a
    functional ``keras.Model`` that is a chain of layers, or one layer), with its weights,
    in evaluation mode.  Keras's padded-step semantics are kept (``Masking`` and
    ``Embedding(mask_zero=True)`` set the lengths; see ``zero_output_for_mask`` and
    ``go_backwards_order`` on the recurrent layers).  Raises TypeError naming the first
    layer it cannot convert."""
    out = _keras_layer(model)
    if not out:
        raise TypeError("from_keras: the model has no layer to convert")
    return Sequential(out).eval()
