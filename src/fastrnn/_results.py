"""Result types returned by the backward functions (shared by the kernels' API and the reference)."""
from collections import namedtuple

RNNGrads = namedtuple("RNNGrads", ["dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"])
RNNGrads.__doc__ = """Gradients of an Elman RNN layer: dx (T, B, I), dh0 (B, H), dw_ih (H, I),
dw_hh (H, H), db_ih (H,) and db_hh (H,) (None when the forward had no bias)."""

GRUGrads = namedtuple("GRUGrads", RNNGrads._fields)
GRUGrads.__doc__ = """Gradients of a GRU layer; fields as RNNGrads with 3*H gate rows (r|z|n)."""

LSTMGrads = namedtuple("LSTMGrads", ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"])
LSTMGrads.__doc__ = """Gradients of an LSTM layer; as RNNGrads plus dc0 (B, H), with 4*H gate rows
(i|f|g|o)."""

PeepholeLSTMGrads = namedtuple("PeepholeLSTMGrads", LSTMGrads._fields + ("dw_peep",))
PeepholeLSTMGrads.__doc__ = """Gradients of a peephole LSTM layer: LSTMGrads' fields plus dw_peep
(3*H,), the gradient of the peephole weights p_i|p_f|p_o."""

ProjectionLSTMGrads = namedtuple("ProjectionLSTMGrads", LSTMGrads._fields + ("dw_hr",))
ProjectionLSTMGrads.__doc__ = """Gradients of a projection LSTM layer: LSTMGrads' fields (dh0 is
(B, P), dw_hh (4*H, P)) plus dw_hr (P, H), the gradient of the projection."""

LayerNormLSTMGrads = namedtuple("LayerNormLSTMGrads", LSTMGrads._fields + (
    "dln_ih_weight", "dln_ih_bias", "dln_hh_weight", "dln_hh_bias", "dln_c_weight",
    "dln_c_bias"))
LayerNormLSTMGrads.__doc__ = """Gradients of a LayerNorm LSTM layer: LSTMGrads' fields plus those of
the LayerNorm gains and biases: input side (4*H,), recurrent side (4*H,), cell (H,)."""

LayerNormGRUGrads = namedtuple("LayerNormGRUGrads", GRUGrads._fields + (
    "dln_ih_weight", "dln_ih_bias", "dln_hh_weight", "dln_hh_bias"))
LayerNormGRUGrads.__doc__ = """Gradients of a LayerNorm GRU layer: GRUGrads' fields plus those of
the LayerNorm gains and biases of the input and recurrent sides (3*H,) each."""
