"""ONNX's RNN / LSTM / GRU operators: weight conversion from PyTorch's layout and one-node
graphs, for running the same layer in ONNX Runtime (the inference peer in ``fastrnn bench``
and the parity tests).  Needs the optional ``onnx`` package (``pip install fastrnn[bench]``);
nothing else in fastrnn imports this module.

ONNX keeps ``W (dirs, G*H, I)``, ``R (dirs, G*H, H)``, ``B (dirs, 2*G*H)`` (input biases,
then recurrent biases) with gate blocks LSTM i|o|f|c and GRU z|r|h, where PyTorch has i|f|g|o
and r|z|n; PyTorch's GRU is ONNX's ``linear_before_reset=1``.
"""
import numpy as np

__all__ = ["to_onnx_gates", "from_onnx_gates", "onnx_weights", "onnx_peepholes", "from_onnx_peepholes",
           "single_layer_model"]

# PyTorch gate block k goes to ONNX block ORDER[cell][k]'s position: ONNX blocks listed as
# PyTorch block indices
_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def to_onnx_gates(cell, a):
    """Reorder the gate blocks (axis 0) of a PyTorch-layout array to ONNX's order."""
    a = np.asarray(a)
    blocks = np.split(a, len(_ORDER[cell]), axis=0)
    return np.concatenate([blocks[k] for k in _ORDER[cell]], axis=0)


def from_onnx_gates(cell, a):
    """The inverse of to_onnx_gates: ONNX's gate blocks (axis 0) in PyTorch's order."""
    order = _ORDER[cell]
    blocks = np.split(np.asarray(a), len(order), axis=0)
    out = [None] * len(order)
    for pos, k in enumerate(order):
        out[k] = blocks[pos]
    return np.concatenate(out, axis=0)


def onnx_weights(cell, w_ih, w_hh, b_ih=None, b_hh=None, dtype=np.float32):
    """W (1, G*H, I), R (1, G*H, H), B (1, 2*G*H) for one direction, from PyTorch's arrays
    (missing biases are zeros)."""
    GH = np.shape(w_hh)[0]
    b_ih = np.zeros(GH) if b_ih is None else b_ih
    b_hh = np.zeros(GH) if b_hh is None else b_hh
    W = to_onnx_gates(cell, w_ih)[None]
    R = to_onnx_gates(cell, w_hh)[None]
    B = np.concatenate([to_onnx_gates(cell, b_ih), to_onnx_gates(cell, b_hh)])[None]
    return [np.ascontiguousarray(a, dtype=dtype) for a in (W, R, B)]


def onnx_peepholes(w_peep, dtype=np.float32):
    """ONNX's LSTM input P (1, 3H), blocks i|o|f, from fastrnn's w_peep (3H,) = p_i|p_f|p_o."""
    p_i, p_f, p_o = np.split(np.asarray(w_peep), 3)
    return np.ascontiguousarray(np.concatenate([p_i, p_o, p_f])[None], dtype=dtype)


def from_onnx_peepholes(P):
    """fastrnn's w_peep (3H,) = p_i|p_f|p_o from ONNX's P (3H,) or (1, 3H), blocks i|o|f."""
    p_i, p_o, p_f = np.split(np.asarray(P).reshape(-1), 3)
    return np.concatenate([p_i, p_f, p_o])


def single_layer_model(cell, input_size, hidden_size, w_ih, w_hh, b_ih=None, b_hh=None, *,
                       nonlinearity="tanh", reverse=False, dtype=np.float32, opset=17,
                       w_peep=None):
    """An ONNX model of one layer and direction with the weights as initializers.

    Inputs ``X (T, B, I)``, ``sequence_lens (B,)`` int32, ``initial_h (1, B, H)`` (and
    ``initial_c`` for the LSTM); outputs ``Y (T, 1, B, H)``, ``Y_h`` (and ``Y_c``).  For
    an LSTM, w_peep (3H,) becomes the operator's peephole input P."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    elem = TensorProto.FLOAT if np.dtype(dtype) == np.float32 else TensorProto.DOUBLE
    W, R, B = onnx_weights(cell, w_ih, w_hh, b_ih, b_hh, dtype)
    H = hidden_size
    inputs = ["X", "W", "R", "B", "sequence_lens", "initial_h"]
    outputs = ["Y", "Y_h"]
    attrs = dict(hidden_size=H, direction="reverse" if reverse else "forward")
    if cell == "lstm":
        inputs.append("initial_c")
        outputs.append("Y_c")
        if w_peep is not None:
            inputs.append("P")
    if cell == "gru":
        attrs["linear_before_reset"] = 1
    if cell == "rnn":
        attrs["activations"] = ["Relu" if nonlinearity == "relu" else "Tanh"]
    node = helper.make_node(_OP[cell], inputs, outputs, **attrs)
    graph_inputs = [helper.make_tensor_value_info("X", elem, ["T", "N", input_size]),
                    helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["N"]),
                    helper.make_tensor_value_info("initial_h", elem, [1, "N", H])]
    if cell == "lstm":
        graph_inputs.append(helper.make_tensor_value_info("initial_c", elem, [1, "N", H]))
    graph_outputs = [helper.make_tensor_value_info("Y", elem, ["T", 1, "N", H]),
                     helper.make_tensor_value_info("Y_h", elem, [1, "N", H])]
    if cell == "lstm":
        graph_outputs.append(helper.make_tensor_value_info("Y_c", elem, [1, "N", H]))
    inits = [numpy_helper.from_array(a, name) for a, name in ((W, "W"), (R, "R"), (B, "B"))]
    if cell == "lstm" and w_peep is not None:
        inits.append(numpy_helper.from_array(onnx_peepholes(w_peep, dtype), "P"))
    graph = helper.make_graph([node], f"fastrnn_{cell}", graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model


def session(model, threads=1):
    """An ONNX Runtime CPU inference session for `model` with `threads` intra-op threads."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
