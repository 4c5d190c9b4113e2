"""What LSTM and GRU gates can do, shown with hand-set weights on the reference cells.

Each function builds a one-unit cell whose weights are chosen by hand (large biases saturate a
gate at 0 or 1) and runs it on an input sequence through :func:`seqrnn.nn.gru_cell` /
:func:`seqrnn.nn.lstm_cell`, the gate equations written out. ``docs/gates.md`` explains each
with the equations; ``tests/test_gates.py`` checks them numerically.

- :func:`lstm_store_input`, :func:`gru_store_input`: the state after step t is a function of
  x_t alone, whatever came before: the current input is stored for the next step.
- :func:`lstm_hold_state`, :func:`gru_hold_state`: the state stays as it was and the input is
  ignored.
- :func:`gru_beyond_any_lstm`: a GRU whose first output no LSTM of any size can produce: from a
  zero state an LSTM's first output is bounded by tanh(1), a GRU's is not.
"""

from __future__ import annotations

import math

import torch

from seqrnn.nn import gru_cell, lstm_cell

SATURATE = 20.0  # a pre-activation of +-20 puts a sigmoid within 2e-9 of 1 or 0
LSTM_FIRST_OUTPUT_BOUND = math.tanh(1.0)


def _gru_weights(
    w_in: tuple[float, float, float],
    w_h: tuple[float, float, float],
    b_in: tuple[float, float, float],
    b_h=(0.0, 0.0, 0.0),
):
    """One-unit GRU weights in PyTorch's layout from (r, z, n) triples."""
    return (
        torch.tensor(w_in, dtype=torch.float64).reshape(3, 1),
        torch.tensor(w_h, dtype=torch.float64).reshape(3, 1),
        torch.tensor(b_in, dtype=torch.float64),
        torch.tensor(b_h, dtype=torch.float64),
    )


def _lstm_weights(w_in, w_h, b_in):
    """One-unit LSTM weights in PyTorch's layout from (i, f, g, o) quadruples."""
    return (
        torch.tensor(w_in, dtype=torch.float64).reshape(4, 1),
        torch.tensor(w_h, dtype=torch.float64).reshape(4, 1),
        torch.tensor(b_in, dtype=torch.float64),
        torch.zeros(4, dtype=torch.float64),
    )


def run_gru(weights, inputs: torch.Tensor, h0: float = 0.0) -> torch.Tensor:
    """States ``[T]`` of a one-unit GRU over ``inputs`` ``[T]``."""
    h = torch.full((1, 1), h0, dtype=torch.float64)
    states = []
    for x in inputs.double():
        h, _ = gru_cell(x.reshape(1, 1), h, *weights)
        states.append(h.item())
    return torch.tensor(states, dtype=torch.float64)


def run_lstm(weights, inputs: torch.Tensor, h0: float = 0.0, c0: float = 0.0):
    """Outputs h ``[T]`` and cell states c ``[T]`` of a one-unit LSTM over ``inputs`` ``[T]``."""
    h = torch.full((1, 1), h0, dtype=torch.float64)
    c = torch.full((1, 1), c0, dtype=torch.float64)
    hs, cs = [], []
    for x in inputs.double():
        h, c, _ = lstm_cell(x.reshape(1, 1), h, c, *weights)
        hs.append(h.item())
        cs.append(c.item())
    return torch.tensor(hs, dtype=torch.float64), torch.tensor(cs, dtype=torch.float64)


def gru_store_input(scale: float = 1.0):
    """z = 0 (the old state is dropped), r = 0 (the candidate ignores it):
    h_t = tanh(scale * x_t), a function of the current input only."""
    return _gru_weights(
        w_in=(0.0, 0.0, scale), w_h=(0.0, 0.0, 0.0), b_in=(-SATURATE, -SATURATE, 0.0)
    )


def lstm_store_input(scale: float = 1.0):
    """f = 0 (the old cell is dropped), i = 1, o = 1, g = tanh(scale * x_t) (no recurrent
    weight): c_t = tanh(scale * x_t), h_t = tanh(c_t)."""
    return _lstm_weights(
        w_in=(0.0, 0.0, scale, 0.0),
        w_h=(0.0, 0.0, 0.0, 0.0),
        b_in=(SATURATE, -SATURATE, 0.0, SATURATE),
    )


def gru_hold_state():
    """z = 1: h_t = h_{t-1}, whatever the input (which still feeds the unused candidate)."""
    return _gru_weights(w_in=(1.0, 1.0, 1.0), w_h=(1.0, 1.0, 1.0), b_in=(0.0, SATURATE, 0.0))


def lstm_hold_state():
    """f = 1, i = 0: c_t = c_{t-1}; o = 1: h_t = tanh(c_t) stays as well."""
    return _lstm_weights(
        w_in=(1.0, 1.0, 1.0, 0.0),
        w_h=(1.0, 1.0, 1.0, 0.0),
        b_in=(-SATURATE, SATURATE, 0.0, SATURATE),
    )


def gru_beyond_any_lstm(scale: float = 10.0):
    """A GRU whose first output from a zero state is tanh(scale * x_1) (z = 0): 0.99999 for
    x_1 = 1. Any LSTM, of any size, from a zero state outputs
    h_1 = o * tanh(i * g) with o, i in (0, 1) and |g| < 1, so |h_1| < tanh(1) = 0.7616 in every
    unit: no LSTM with the same input and output reproduces this GRU."""
    return gru_store_input(scale)


def lstm_first_output(w_ih: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """First outputs ``[B, H]`` of an LSTM (weights ``w_ih [4H, I]``, summed biases ``b [4H]``)
    from a zero state: the recurrent weights meet h_0 = 0 and drop out."""
    h = torch.zeros(x.shape[0], w_ih.shape[0] // 4, dtype=x.dtype)
    c = torch.zeros_like(h)
    w_hh = torch.zeros(w_ih.shape[0], h.shape[1], dtype=x.dtype)
    out, _, _ = lstm_cell(x, h, c, w_ih, w_hh, b, torch.zeros_like(b))
    return out
