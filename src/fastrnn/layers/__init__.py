"""Layers: recurrent (RNN, LSTM, GRU) and the rest of a sequence model (Dense, Embedding,
Masking, Dropout, activations, LastStep, Pool, Attention).  See ``fastrnn.layers._base.Layer``
for the protocol (forward / backward / grads / parameters / state_dict)."""
from fastrnn.layers._attention import Attention
from fastrnn.layers._base import Layer
from fastrnn.layers._core import (Dense, Dropout, Embedding, LastStep, Masking, Pool, ReLU,
                                  Sigmoid, Softmax, Tanh)
from fastrnn.layers._recurrent import GRU, LSTM, RNN, lengths_from_mask, sequence_mask

__all__ = ["Layer", "RNN", "LSTM", "GRU", "Dense", "Embedding", "Masking", "Dropout", "Tanh",
           "ReLU", "Sigmoid", "Softmax", "LastStep", "Pool", "Attention", "lengths_from_mask",
           "sequence_mask"]
