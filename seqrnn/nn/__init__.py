"""Recurrent building blocks: the fused GRU/LSTM stack, reference cells and output heads."""

from seqrnn.nn import fused
from seqrnn.nn.heads import MLPHead
from seqrnn.nn.reference import gru_cell, lstm_cell, reference_forward
from seqrnn.nn.stack import CELLS, RecurrentStack, State

__all__ = [
    "CELLS",
    "MLPHead",
    "RecurrentStack",
    "State",
    "fused",
    "gru_cell",
    "lstm_cell",
    "reference_forward",
]
