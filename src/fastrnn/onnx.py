"""Models out to ONNX: ``fastrnn.onnx.export(model, path)`` writes a standard ONNX graph of a
``Sequential`` (ONNX's ``LSTM`` / ``GRU`` / ``RNN`` operators with ``sequence_lens``,
``Gather`` for embeddings, ``MatMul`` + ``Add`` for dense layers, ...) that ONNX Runtime runs
to the same outputs as ``model.forward`` in evaluation mode.

Needs the ``onnx`` package (``pip install "fastrnn[onnx]"``: onnx and onnxruntime); fastrnn
imports this module only when asked (``from fastrnn import onnx``).  ONNX Runtime's CPU
recurrent operators run float32 only: a float64 model exports as a valid graph of doubles
that other runtimes may run.

The graph's inputs: ``x`` in the model's layout (int64 token ids when the first layer is an
``Embedding``), and ``lengths`` (B,) int64 when ``lengths=True``; its output ``y``.
``fastrnn.onnx.load(path)`` reads such graphs back as a ``Sequential``, and the graphs
``torch.onnx.export`` writes for ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` models: the main data
path from the first input to the first output, through ``Gather`` (embedding), the
recurrent operators (stacked ones become one multi-layer layer), ``MatMul`` / ``Add`` /
``Gemm`` (dense), activations and the layout glue (``Transpose``, ``Reshape``, ``Squeeze``).

Layers exported: ``Masking`` and ``Embedding`` (``mask_zero`` included) as the first layer
(the graph computes the lengths from x: it counts each row's valid steps, so a padded step
before a valid one, which fastrnn refuses, is not detected), ``RNN`` / ``LSTM`` (peepholes
included) / ``GRU`` (either ``reset_after``) with any ``num_layers``, ``bidirectional``
(``merge_mode`` concat, sum, ave or mul), ``return_sequences``, ``go_backwards`` (either
``go_backwards_order``) and ``zero_output_for_mask=False``; ``Dense`` (with its activation),
``Tanh``, ``ReLU``, ``Sigmoid``, ``Softmax`` (last axis), ``Dropout`` (the identity),
``LastStep``.  Refused with a ValueError naming the layer: what ONNX's operators cannot
express (LayerNorm, zoneout, ``proj_size``, stateful layers) and the layers without an
export yet (``Pool``, ``Attention``).  ``load`` reads back everything ``export`` writes.
"""
import numpy as np

from fastrnn import _onnx
from fastrnn import layers as L

__all__ = ["export", "load"]

_KIND = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _onnx_modules():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "fastrnn[onnx]" '
                          '(or pip install onnx)') from None
    return onnx, TensorProto, helper, numpy_helper


class _Graph:
    """Nodes and initializers under construction, with fresh names."""

    def __init__(self, helper, numpy_helper, dtype):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.dtype = dtype
        self.nodes, self.inits = [], []
        self.count = 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base, value, dtype=None):
        arr = np.array(value, dtype=dtype or self.dtype)         # 0-d stays 0-d
        n = self.name(base)
        self.inits.append(self.numpy_helper.from_array(arr, n))
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs


def _refuse(index, layer, what):
    raise ValueError(f"fastrnn.onnx.export: layer {index} ({type(layer).__name__}) {what}")


def _recurrent(g, index, layer, x, seq_lens, time_major):
    """The layer's ONNX nodes on x (time-major inside); returns (output, time_major)."""
    from onnx import TensorProto
    kind = _KIND[type(layer).__name__]
    for attr, what in (("layer_norm", "uses layer_norm"), ("stateful", "is stateful")):
        if getattr(layer, attr, False):
            _refuse(index, layer, f"{what}, which ONNX's {kind.upper()} operator cannot "
                                  f"express")
    if getattr(layer, "zoneout_h", 0) or getattr(layer, "zoneout_c", 0):
        _refuse(index, layer, "uses zoneout, which ONNX's operators cannot express")
    if getattr(layer, "proj_size", 0):
        _refuse(index, layer, "has proj_size, which ONNX's LSTM operator does not have")
    if layer.bidirectional and layer.merge_mode not in ("concat", "sum", "ave", "mul"):
        _refuse(index, layer, f"has merge_mode={layer.merge_mode!r}")
    if not time_major:
        x = g.op("Transpose", [x], perm=[1, 0, 2])
    params = layer.parameters()
    H = layer.hidden_size
    D = 2 if layer.bidirectional else 1
    suffixes = [""] + (["_reverse"] if D == 2 else [])
    for lay in range(layer.num_layers):
        Ws, Rs, Bs, Ps = [], [], [], []
        for sfx in suffixes:
            p = lambda n: params.get(f"{n}_l{lay}{sfx}")       # noqa: E731
            W, R, B = _onnx.onnx_weights(kind, p("weight_ih"), p("weight_hh"), p("bias_ih"),
                                         p("bias_hh"), g.dtype)
            Ws.append(W[0]), Rs.append(R[0]), Bs.append(B[0])
            if p("weight_peep") is not None:
                Ps.append(_onnx.onnx_peepholes(p("weight_peep"), g.dtype)[0])
        inputs = [x, g.const("W", np.stack(Ws)), g.const("R", np.stack(Rs)),
                  g.const("B", np.stack(Bs)), seq_lens or ""]
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else
                     "reverse" if layer.go_backwards else "forward")
        if kind == "lstm" and Ps:
            inputs += ["", "", g.const("P", np.stack(Ps))]
        if kind == "gru":
            attrs["linear_before_reset"] = 1 if layer.reset_after else 0
        if kind == "rnn":
            attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"] * D
        n_out = 3 if kind == "lstm" else 2
        outs = g.op(_onnx._OP[kind], inputs, n_out=n_out, **attrs)
        y, y_h = outs[0], outs[1]                  # Y (T, D, B, H), Y_h (D, B, H)
        last = lay == layer.num_layers - 1
        if last and not layer.return_sequences:
            return _merge(g, layer, y_h, D, H, axis=0), None
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3])         # (T, B, D, H)
        if last:
            x = _merge(g, layer, y, D, H, axis=2)
            if layer.go_backwards:                 # outputs in processing order
                if seq_lens is None or layer.go_backwards_order == "full":
                    x = g.op("Slice", [x, g.const("s", [-1], np.int64),
                                       g.const("e", [-2**62], np.int64),
                                       g.const("axes", [0], np.int64),
                                       g.const("steps", [-1], np.int64)])
                else:
                    x = g.op("ReverseSequence",
                             [x, g.op("Cast", [seq_lens], to=TensorProto.INT64)],
                             time_axis=0, batch_axis=1)
            if seq_lens is not None and not layer.zero_output_for_mask and not (
                    layer.go_backwards and layer.go_backwards_order == "full"):
                x = _repeat_last(g, x, seq_lens)
        else:
            x = g.op("Reshape", [y, g.const("shape", [0, 0, D * H], np.int64)])
    return x, True


def _merge(g, layer, y, D, H, axis):
    """Directions (at `axis`) merged as the layer does: concat, sum, ave or mul."""
    if D == 1:
        return g.op("Squeeze", [y, g.const("axes", [axis], np.int64)])
    if layer.merge_mode == "concat":
        if axis == 0:                                          # (D, B, H) -> (B, D*H)
            y = g.op("Transpose", [y], perm=[1, 0, 2])
            return g.op("Reshape", [y, g.const("shape", [0, D * H], np.int64)])
        return g.op("Reshape", [y, g.const("shape", [0, 0, D * H], np.int64)])
    op = {"sum": "ReduceSum", "ave": "ReduceMean", "mul": "ReduceProd"}[layer.merge_mode]
    if op == "ReduceSum":
        return g.op(op, [y, g.const("axes", [axis], np.int64)], keepdims=0)
    return g.op(op, [y], axes=[axis], keepdims=0)


def _repeat_last(g, y, seq_lens):
    """y (T, B, F) with each row's last valid step repeated over its padded steps
    (zero_output_for_mask=False): y[min(t, len - 1), b]."""
    from onnx import TensorProto
    shape = g.op("Shape", [y])
    steps = g.op("Range", [g.const("zero", 0, np.int64),
                           g.op("Squeeze", [g.op("Slice", [shape, g.const("s", [0], np.int64),
                                                           g.const("e", [1], np.int64)]),
                                            g.const("axes", [0], np.int64)]),
                           g.const("one", 1, np.int64)])
    last = g.op("Sub", [g.op("Cast", [seq_lens], to=TensorProto.INT64),
                        g.const("one", [1], np.int64)])
    idx = g.op("Min", [g.op("Unsqueeze", [steps, g.const("axes", [1], np.int64)]),
                       g.op("Unsqueeze", [last, g.const("axes", [0], np.int64)])])   # (T, B)
    idx = g.op("Expand", [g.op("Unsqueeze", [idx, g.const("axes", [2], np.int64)]), shape])
    return g.op("GatherElements", [y, idx], axis=0)


def _last_step(g, y, lengths, time_major):
    """y (T, B, F) or (B, T, F) -> (B, F): each row's last valid step."""
    t_axis = 0 if time_major else 1
    if lengths is None:
        last = g.op("Gather", [y, g.const("last", -1, np.int64)], axis=t_axis)
        return last
    if time_major:
        y = g.op("Transpose", [y], perm=[1, 0, 2])              # (B, T, F)
    idx = g.op("Sub", [lengths, g.const("one", [1], np.int64)])
    idx = g.op("Reshape", [idx, g.const("shape", [-1, 1, 1], np.int64)])
    shape = g.op("Shape", [y])
    b_f = g.op("Gather", [shape, g.const("bf", [0, 2], np.int64)])
    one = g.const("one", [1], np.int64)
    target = g.op("Concat", [g.op("Slice", [b_f, g.const("s", [0], np.int64),
                                             g.const("e", [1], np.int64)]),
                             one,
                             g.op("Slice", [b_f, g.const("s", [1], np.int64),
                                            g.const("e", [2], np.int64)])], axis=0)
    idx = g.op("Expand", [idx, target])
    out = g.op("GatherElements", [y, idx], axis=1)            # (B, 1, F)
    return g.op("Squeeze", [out, g.const("axes", [1], np.int64)])


def export(model, path=None, *, lengths=False, opset=17):
    """Write `model` (a ``fastrnn.Sequential``) as an ONNX file at `path` (or only build it)
    and return the ``onnx.ModelProto``.  ``lengths=True`` adds an int64 (B,) graph input
    for the rows' valid lengths, used as the recurrent operators' ``sequence_lens`` and by
    ``LastStep``, as ``model.forward(x, lengths=...)`` does."""
    onnx, TensorProto, helper, numpy_helper = _onnx_modules()
    from fastrnn.models import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"fastrnn.onnx.export takes a fastrnn.Sequential, got "
                        f"{type(model).__name__}")
    layers = model.layers
    if not layers:
        raise ValueError("fastrnn.onnx.export: the model has no layers")
    dtypes = {np.dtype(p.dtype) for p in model.parameters().values()} or {np.dtype(np.float32)}
    if len(dtypes) > 1:
        raise ValueError(f"fastrnn.onnx.export: the model mixes dtypes {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    g = _Graph(helper, numpy_helper, dtype)
    batch_first = next((lay.batch_first for lay in layers
                        if isinstance(lay, (L.RNN, L.LSTM, L.GRU))), True)
    time_major = not batch_first
    first = layers[0]
    x = "x"
    if isinstance(first, L.Embedding):
        x_info = helper.make_tensor_value_info("x", TensorProto.INT64,
                                               ["B", "T"] if batch_first else ["T", "B"])
    else:
        feat = next((getattr(lay, "input_size", getattr(lay, "in_features", None))
                     for lay in layers if hasattr(lay, "input_size") or
                     hasattr(lay, "in_features")), None)
        x_info = helper.make_tensor_value_info(
            "x", elem, (["B", "T"] if batch_first else ["T", "B"]) + [feat])
    inputs = [x_info]
    len_name = seq_lens = None
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        len_name = "lengths"
        seq_lens = g.op("Cast", [len_name], to=TensorProto.INT32)
    seq = True                                   # x still has a time axis
    t_axis = 1 if batch_first else 0
    for i, layer in enumerate(layers):
        name = type(layer).__name__
        if isinstance(layer, (L.Masking, L.Embedding)):
            keep = None                           # (B, T) / (T, B) 0/1 of the valid steps
            if isinstance(layer, L.Masking):
                # steps whose features all equal mask_value are padding: zeroed, and counted
                # out of each row's length (the graph counts them: a padded step before a
                # valid one, which fastrnn refuses, is not detected)
                valid = g.op("Not", [g.op("Equal", [x, g.const("mask_value", layer.mask_value,
                                                               g.dtype)])])
                count = g.op("ReduceSum", [g.op("Cast", [valid], to=elem),
                                           g.const("axes", [-1], np.int64)], keepdims=0)
                keep = g.op("Cast", [g.op("Greater", [count, g.const("zero", 0, g.dtype)])],
                            to=TensorProto.INT64)
                x = g.op("Mul", [x, g.op("Unsqueeze", [g.op("Cast", [keep], to=elem),
                                                        g.const("axes", [-1], np.int64)])])
            else:
                if layer.mask_zero:
                    keep = g.op("Cast", [g.op("Not", [g.op("Equal", [x, g.const(
                        "zero_id", 0, np.int64)])])], to=TensorProto.INT64)
                x = g.op("Gather", [g.const("embedding", layer.parameters()["weight"]), x],
                         axis=0)
            if keep is not None:
                if lengths or i:
                    _refuse(i, layer, "sets the lengths from x: export it as the first layer, "
                                      "without lengths=True" if i == 0 else "sets the lengths "
                                      "from x, so it must be the model's first layer")
                len_name = g.op("ReduceSum", [keep, g.const("axes", [t_axis], np.int64)],
                                keepdims=0)
                seq_lens = g.op("Cast", [len_name], to=TensorProto.INT32)
        elif isinstance(layer, (L.RNN, L.LSTM, L.GRU)):
            if layer.batch_first != batch_first:
                _refuse(i, layer, "has another batch_first than the model's first recurrent "
                                  "layer")
            x, tm = _recurrent(g, i, layer, x, seq_lens, time_major)
            if tm is None:
                seq = False
            elif not time_major:
                x = g.op("Transpose", [x], perm=[1, 0, 2])
        elif isinstance(layer, L.Dense):
            p = layer.parameters()
            x = g.op("MatMul", [x, g.const("weight_t", p["weight"].T)])
            if "bias" in p:
                x = g.op("Add", [x, g.const("bias", p["bias"])])
            if layer.activation not in (None, "linear"):
                x = g.op({"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid",
                          "softmax": "Softmax"}[layer.activation], [x],
                         **({"axis": -1} if layer.activation == "softmax" else {}))
        elif name in ("Tanh", "ReLU", "Sigmoid"):
            x = g.op({"Tanh": "Tanh", "ReLU": "Relu", "Sigmoid": "Sigmoid"}[name], [x])
        elif name == "Softmax":
            if layer.axis != -1:
                _refuse(i, layer, f"is over axis {layer.axis}; the export handles the last")
            x = g.op("Softmax", [x], axis=-1)
        elif name == "Dropout":
            continue
        elif name == "LastStep":
            if not seq:
                _refuse(i, layer, "follows a layer without a time axis")
            x = _last_step(g, x, len_name, time_major)
            seq = False
        else:
            _refuse(i, layer, "has no ONNX export yet (see fastrnn.onnx)")
    g.nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(g.nodes, "fastrnn", inputs,
                              [helper.make_tensor_value_info(
                                  "y", elem, [f"y{k}" for k in range(3 if seq else 2)])],
                              g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastrnn")
    proto.ir_version = min(proto.ir_version, 10)
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, str(path))
    return proto


# ---- import ------------------------------------------------------------------------------

def _attrs(node, helper):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load(path):
    """The ``Sequential`` an ONNX file's graph computes (see the module's docstring), with
    its weights.  Raises ValueError naming the first node on the data path that fastrnn
    cannot express."""
    onnx, TensorProto, helper, numpy_helper = _onnx_modules()
    from fastrnn.models import Sequential
    proto = onnx.load(str(path)) if not hasattr(path, "graph") else path
    graph = proto.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            value = _attrs(n, helper).get("value")
            if value is not None:
                consts[n.output[0]] = numpy_helper.to_array(value)
    inputs = [i.name for i in graph.input if i.name not in consts]
    if not inputs:
        raise ValueError("fastrnn.onnx.load: the graph has no data input")
    producer = {o: n for n in graph.node for o in n.output}

    def is_zero(name, depth=0):
        """Is tensor `name` provably all zeros (torch writes zero states as ConstantOfShape,
        then slices and reshapes them)?"""
        if name in consts:
            return not np.any(consts[name])
        n = producer.get(name)
        if n is None or depth > 20:
            return False
        if n.op_type == "ConstantOfShape":
            value = _attrs(n, helper).get("value")
            return value is None or not np.any(numpy_helper.to_array(value))
        if n.op_type in ("Slice", "Reshape", "Unsqueeze", "Squeeze", "Expand", "Identity",
                         "Transpose", "Cast"):
            return is_zero(n.input[0], depth + 1)
        if n.op_type == "Concat":
            return all(is_zero(i, depth + 1) for i in n.input)
        return False

    def axes_of(n, a):
        """A Squeeze or Reduce node's axes (an input since opset 13 / 18, an attribute
        before), or None."""
        return consts.get(n.input[1]) if len(n.input) > 1 and n.input[1] else a.get("axes")

    def time_axis(layout, batch_first):
        """The time axis of a sequence in `layout` ("in": the input's, "t": transposed)."""
        return 1 if (layout == "in") == batch_first else 0

    def consumers(name):
        """The nodes that read tensor `name` (the graph's outputs count as readers)."""
        out = [m for m in graph.node if name in m.input and m.op_type not in ("Shape", "Size")]
        return out or [o for o in graph.output if o.name == name]

    def producer_chain(name, depth=3):
        """The op types that make tensor `name`, following first inputs back."""
        out = []
        while len(out) < depth and name in producer:
            out.append(producer[name].op_type)
            name = producer[name].input[0]
        return out

    def depends_on(name, source, depth=0):
        """Is tensor `name` computed from tensor `source`?"""
        if name == source:
            return True
        n = producer.get(name)
        return n is not None and depth < 30 and any(depends_on(i, source, depth + 1)
                                                    for i in n.input if i)

    def refuse(n, what):
        raise ValueError(f"fastrnn.onnx.load: node {n.name or n.output[0]!r} ({n.op_type}) "
                         f"{what}")

    main, layout = inputs[0], "in"          # in: the input's own layout; t: transposed
    lengths_name = inputs[1] if len(inputs) > 1 else None
    specs = []                               # [kind, dict] in order
    mask = None                              # a first layer's mask subgraph, when seen
    for n in graph.node:
        if main not in n.input:
            continue
        a = _attrs(n, helper)
        op = n.op_type
        if op in ("Shape", "Size"):
            continue                          # a side branch (e.g. torch's zero states)
        if op == "Equal" and not specs and mask is None and n.input[0] == main and \
                n.input[1] in consts and consts[n.input[1]].ndim == 0:
            # the start of the lengths subgraph of a first Masking / Embedding(mask_zero)
            mask = {"equal": n.output[0], "value": consts[n.input[1]].item()}
            continue
        if op in ("RNN", "LSTM", "GRU"):
            if a.get("layout", 0) != 0:
                refuse(n, "has layout=1")
            W, R = consts.get(n.input[1]), consts.get(n.input[2])
            B = consts.get(n.input[3]) if len(n.input) > 3 and n.input[3] else None
            if W is None or R is None or (len(n.input) > 3 and n.input[3] and B is None):
                refuse(n, "takes weights computed in the graph, not constants")
            for k in (5, 6):
                if len(n.input) > k and n.input[k] and not is_zero(n.input[k]):
                    refuse(n, "starts from a state that is not zeros (a fastrnn model's "
                              "starts from zeros unless given one)")
            masked = mask is not None and mask.get("layer") and len(n.input) > 4 and \
                n.input[4] and producer_chain(n.input[4], 2) == ["Cast", "ReduceSum"] and \
                depends_on(n.input[4], mask["equal"])
            if masked and mask["layer"] == "embedding":
                mask["spec"]["mask_zero"] = True     # its lengths are the ids != 0
            if mask is not None and mask.get("layer") == "masking" and not masked:
                refuse(n, "does not take the lengths of the Masking before it, as fastrnn's "
                          "layers after a Masking do")
            if len(n.input) > 4 and n.input[4] and lengths_name is None and not masked:
                refuse(n, "takes sequence_lens that are neither a graph input nor the "
                          "lengths of a first Masking / Embedding(mask_zero) layer")
            if op == "LSTM" and a.get("input_forget", 0):
                refuse(n, "uses input_forget")
            if "clip" in a:
                refuse(n, "clips its cell (clip)")
            kind = op.lower()
            direction = a.get("direction", b"forward")
            direction = direction.decode() if isinstance(direction, bytes) else direction
            acts = [x.decode() if isinstance(x, bytes) else x for x in a.get("activations", [])]
            P = consts.get(n.input[7]) if op == "LSTM" and len(n.input) > 7 and n.input[7] \
                else None
            spec = dict(kind=kind, H=int(a["hidden_size"]), D=W.shape[0], W=W, R=R, B=B, P=P,
                        relu=bool(acts) and acts[0].lower() == "relu",
                        lbr=int(a.get("linear_before_reset", 0)),
                        batch_first=layout == "t", back=direction == "reverse")
            if kind == "lstm" and acts and [x.lower() for x in acts[:3]] != \
                    ["sigmoid", "tanh", "tanh"]:
                refuse(n, f"uses activations {acts}")
            if kind == "gru" and acts and [x.lower() for x in acts[:2]] != ["sigmoid", "tanh"]:
                refuse(n, f"uses activations {acts}")
            prev = specs[-1] if specs else None
            if prev is not None and prev[0] == "rnn_stack" and prev[1]["open"] and \
                    all(prev[1]["layers"][0][k] == spec[k] for k in ("kind", "H", "D", "relu",
                                                                    "lbr", "back")):
                prev[1]["layers"].append(spec)
            else:
                specs.append(["rnn_stack", {"layers": [spec], "open": True,
                                            "batch_first": layout == "t"}])
            main, layout = n.output[0], "y4"                   # (T, D, B, H)
            if not consumers(n.output[0]) and len(n.output) > 1 and consumers(n.output[1]):
                # only the final state Y_h (D, B, H) goes on: return_sequences=False
                specs[-1][1]["return_sequences"] = False
                main, layout = n.output[1], "yh"
        elif op == "Transpose":
            perm = list(a.get("perm", []))
            if layout in ("in", "t") and perm == [1, 0, 2]:
                layout = "t" if layout == "in" else "in"
            elif layout == "y4" and perm == [0, 2, 1, 3]:
                layout = "y4t"                                 # (T, B, D, H)
            else:
                refuse(n, f"transposes with perm {perm} where fastrnn's layout cannot")
            main = n.output[0]
        elif op in ("ReduceSum", "ReduceMean", "ReduceProd") and layout in ("y4t", "yh"):
            axes = axes_of(n, a)
            want = 2 if layout == "y4t" else 0
            if axes is None or list(np.atleast_1d(axes)) != [want] or a.get("keepdims", 1):
                refuse(n, "reduces other than the directions' axis")
            specs[-1][1]["merge_mode"] = {"ReduceSum": "sum", "ReduceMean": "ave",
                                          "ReduceProd": "mul"}[op]
            layout = ("t" if specs[-1][1]["batch_first"] else "in") if layout == "y4t" \
                else "flat"
            main = n.output[0]
        elif op == "Transpose" and layout == "yh" and list(a.get("perm", [])) == [1, 0, 2]:
            layout, main = "yht", n.output[0]                  # (B, D, H)
        elif (op == "Squeeze" and layout == "yh") or (op == "Reshape" and layout == "yht"):
            if op == "Squeeze":
                axes = axes_of(n, a)
                if axes is None or list(np.atleast_1d(axes)) != [0]:
                    refuse(n, "squeezes an axis other than the direction's")
            layout, main = "flat", n.output[0]
        elif op in ("Reshape", "Squeeze") and layout in ("y4", "y4t"):
            if layout == "y4" and op == "Reshape":
                refuse(n, "mixes the directions' outputs")
            if op == "Squeeze" and layout == "y4":
                axes = axes_of(n, a)
                if axes is None or list(np.atleast_1d(axes)) != [1]:
                    refuse(n, "squeezes an axis other than the direction's")
            layout = "t" if specs[-1][1]["batch_first"] else "in"
            main = n.output[0]
        elif op == "Gather" and n.input[1] == main and n.input[0] in consts \
                and a.get("axis", 0) == 0 and consts[n.input[0]].ndim == 2:
            spec = {"weight": consts[n.input[0]], "mask_zero": False}
            if mask is not None and mask["value"] == 0 and not specs:
                mask.update(layer="embedding", spec=spec)     # mask_zero if the lengths of
            specs.append(["embedding", spec])                 # a recurrent operator use it
            main = n.output[0]
        elif op == "Mul" and mask is not None and not specs and n.input[0] == main and \
                producer_chain(n.input[1], 8) == [
                    "Unsqueeze", "Cast", "Cast", "Greater", "ReduceSum", "Cast", "Not",
                    "Equal"] and depends_on(n.input[1], mask["equal"]):
            mask["layer"] = "masking"
            specs.append(["masking", float(mask["value"])])
            main = n.output[0]
        elif op == "MatMul" and n.input[0] == main and n.input[1] in consts:
            specs.append(["dense", {"W": consts[n.input[1]].T, "b": None}])
            main = n.output[0]
        elif op == "Gemm" and n.input[0] == main and n.input[1] in consts:
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                refuse(n, "uses transA, alpha or beta")
            Wg = consts[n.input[1]]
            specs.append(["dense", {"W": Wg if a.get("transB", 0) else Wg.T,
                                    "b": consts.get(n.input[2]) if len(n.input) > 2 else None}])
            main = n.output[0]
        elif op == "Add" and specs and specs[-1][0] == "dense" and specs[-1][1]["b"] is None \
                and (set(n.input) - {main}) <= set(consts):
            other = [i for i in n.input if i != main][0]
            specs[-1][1]["b"] = consts[other].reshape(-1)
            main = n.output[0]
        elif op in ("Relu", "Tanh", "Sigmoid", "Softmax"):
            if op == "Softmax" and a.get("axis", -1) not in (-1,):
                refuse(n, f"is over axis {a.get('axis')}")
            specs.append([op.lower(), None])
            main = n.output[0]
        elif op in ("Slice", "ReverseSequence", "GatherElements") and layout in ("in", "t") \
                and n.input[0] == main and specs and specs[-1][0] == "rnn_stack" and \
                specs[-1][1].get("return_sequences", True) and (
                    op != "GatherElements" or producer_chain(n.input[1])[:3] ==
                    ["Expand", "Unsqueeze", "Min"]):
            # a go_backwards layer's outputs reversed into processing order (over the whole
            # axis: Slice with step -1; over each row's valid steps: ReverseSequence), or the
            # last output repeated over the padding (GatherElements of min(t, len - 1))
            stack = specs[-1][1]
            t_axis = time_axis(layout, stack["batch_first"])
            if op == "GatherElements":
                if a.get("axis", 0) != t_axis or stack["layers"][0]["D"] != 1:
                    refuse(n, "gathers other than a layer's last output over its padding")
                stack["repeat"] = True
            else:
                if not stack["layers"][0]["back"] or stack.get("order") or stack.get("repeat"):
                    refuse(n, "reverses the outputs of a layer that runs forward")
                if op == "Slice":
                    starts, ends, axes, steps = (consts.get(i) for i in n.input[1:5])
                    if steps is None or list(steps) != [-1] or list(axes) != [t_axis] or \
                            list(starts) != [-1] or ends[0] > -2**31:
                        refuse(n, "slices other than a reversal of the time axis")
                    stack["order"] = "full"
                else:
                    if a.get("time_axis", 0) != t_axis:
                        refuse(n, "reverses along an axis other than time")
                    stack["order"] = "valid"
            main = n.output[0]
        elif op in ("Gather", "GatherElements") and n.input[0] == main \
                and layout in ("in", "t"):
            # LastStep: each row's last step (Gather of index -1 on the time axis), or with
            # lengths its step lengths - 1 (GatherElements, then a Squeeze of that axis)
            stack = next((sp for sp in reversed(specs) if sp[0] == "rnn_stack"), None)
            if stack is None:
                refuse(n, "picks a step of a sequence no recurrent operator made")
            t_axis = time_axis(layout, stack[1]["batch_first"])
            if a.get("axis", 0) != t_axis:
                refuse(n, "gathers along an axis other than time")
            if op == "Gather":
                idx = consts.get(n.input[1])
                if idx is None or idx.ndim != 0 or int(idx) != -1:
                    refuse(n, "picks a step other than the last")
                layout = "flat"
            else:
                if lengths_name is None or not depends_on(n.input[1], lengths_name):
                    refuse(n, "picks steps that do not come from the lengths input")
                layout = "picked"
            specs.append(["laststep", None])
            main = n.output[0]
        elif op == "Squeeze" and layout == "picked":
            axes = axes_of(n, a)
            if axes is None or list(np.atleast_1d(axes)) != [1]:
                refuse(n, "squeezes an axis other than the picked step's")
            layout = "flat"
            main = n.output[0]
        elif op in ("Identity", "Dropout"):
            main = n.output[0]
        else:
            refuse(n, "is on the data path and has no fastrnn equivalent")
        if op not in ("RNN", "LSTM", "GRU", "Transpose", "Reshape", "Squeeze") or \
                layout in ("yh", "yht", "flat"):
            for sp in specs:
                if sp[0] == "rnn_stack":
                    sp[1]["open"] = False
    if main != graph.output[0].name:
        raise ValueError("fastrnn.onnx.load: the graph's first output is not the end of its "
                         "data path from the first input")
    if layout in ("y4", "y4t", "yh", "yht"):
        raise ValueError("fastrnn.onnx.load: the graph outputs the recurrent operator's "
                         "(T, directions, B, H) tensor, which fastrnn's layers do not")
    if layout == "picked":
        raise ValueError("fastrnn.onnx.load: the graph ends on a picked step that keeps its "
                         "time axis")
    if layout == "t":
        raise ValueError("fastrnn.onnx.load: the graph's output is in another layout (time- "
                         "or batch-major) than its input, which a fastrnn chain keeps")
    return Sequential(_build(specs, layout))


def _build(specs, layout):
    layers = []
    for kind, spec in specs:
        if kind == "embedding":
            w = spec["weight"]
            layer = L.Embedding(w.shape[0], w.shape[1], dtype=_float(w),
                                mask_zero=spec["mask_zero"])
            layer.load_state_dict({"weight": w})
        elif kind == "masking":
            layer = L.Masking(spec)
        elif kind == "dense":
            W, b = spec["W"], spec["b"]
            layer = L.Dense(W.shape[1], W.shape[0], bias=b is not None, dtype=_float(W))
            layer.load_state_dict({"weight": W, **({"bias": b} if b is not None else {})})
        elif kind in ("relu", "tanh", "sigmoid", "softmax"):
            layer = {"relu": L.ReLU, "tanh": L.Tanh, "sigmoid": L.Sigmoid,
                     "softmax": L.Softmax}[kind]()
        elif kind == "laststep":
            layer = L.LastStep()
        else:
            layer = _build_recurrent(spec)
        layers.append(layer)
    return layers


def _float(a):
    return np.float64 if a.dtype == np.float64 else np.float32


def _build_recurrent(stack):
    first = stack["layers"][0]
    kind, H, D = first["kind"], first["H"], first["D"]
    dtype = _float(first["W"])
    kw = dict(num_layers=len(stack["layers"]), batch_first=stack["batch_first"],
              bidirectional=D == 2, dtype=dtype, merge_mode=stack.get("merge_mode", "concat"),
              return_sequences=stack.get("return_sequences", True))
    if first["back"]:
        kw.update(go_backwards=True, go_backwards_order=stack.get("order", "valid"))
    if stack.get("repeat"):
        kw["zero_output_for_mask"] = False
    I = first["W"].shape[2]
    if kind == "rnn":
        layer = L.RNN(I, H, nonlinearity="relu" if first["relu"] else "tanh", **kw)
    elif kind == "lstm":
        layer = L.LSTM(I, H, peephole=first["P"] is not None, **kw)
    else:
        layer = L.GRU(I, H, reset_after=bool(first["lbr"]), **kw)
    state = {}
    GH = first["W"].shape[1]
    for k, spec in enumerate(stack["layers"]):
        for d, sfx in enumerate(["", "_reverse"][:D]):
            B = spec["B"][d] if spec["B"] is not None else np.zeros(2 * GH, dtype)
            state[f"weight_ih_l{k}{sfx}"] = _onnx.from_onnx_gates(kind, spec["W"][d])
            state[f"weight_hh_l{k}{sfx}"] = _onnx.from_onnx_gates(kind, spec["R"][d])
            state[f"bias_ih_l{k}{sfx}"] = _onnx.from_onnx_gates(kind, B[:GH])
            state[f"bias_hh_l{k}{sfx}"] = _onnx.from_onnx_gates(kind, B[GH:])
            if spec["P"] is not None:
                state[f"weight_peep_l{k}{sfx}"] = _onnx.from_onnx_peepholes(spec["P"][d])
    layer.load_state_dict(state)
    return layer
