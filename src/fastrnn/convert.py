"""Whole models in from other frameworks: ``fastrnn.from_torch(module)``.

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

Not yet converted: Keras models (``from_keras``) and custom ``nn.Module`` classes; ONNX
files are written by ``fastrnn.onnx.export`` (reading them back is still to come).
"""
import numpy as np

from fastrnn import layers as L
from fastrnn.models import Sequential

__all__ = ["from_torch"]


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
