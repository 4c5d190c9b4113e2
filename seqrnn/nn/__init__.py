"""Recurrent building blocks: the stack (fused GRU/LSTM, or a cell of one's own on a step
loop), the cell registry, reference cells and output heads."""

from seqrnn.nn import fused
from seqrnn.nn.cells import State, StepCell, cell_names, register_cell, resolve_cell
from seqrnn.nn.heads import MLPHead
from seqrnn.nn.reference import gru_cell, lstm_cell, reference_forward
from seqrnn.nn.stack import CELLS, RecurrentStack

__all__ = [
    "CELLS",
    "MLPHead",
    "RecurrentStack",
    "State",
    "StepCell",
    "cell_names",
    "fused",
    "gru_cell",
    "lstm_cell",
    "reference_forward",
    "register_cell",
    "resolve_cell",
]
