r"""GRU and LSTM cells written out from their gate equations, one step at a time.

They are slow on purpose: a Python loop over time with every gate named. They exist to check the
fused kernels numerically and to expose gate activations for analysis. Weights use PyTorch's
layout (``weight_ih [G*H, I]``, ``weight_hh [G*H, H]``, gate blocks stacked along dim 0), so a
:class:`~seqrnn.nn.RecurrentStack`'s parameters plug in unchanged.

GRU (blocks r, z, n)::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset gate
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update gate
    h~ = tanh(W_in x + b_in + r * (W_hn h + b_hn))     candidate
    h' = (1 - z) * h~ + z * h

LSTM (blocks i, f, g, o)::

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)         input gate
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)         forget gate
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)            candidate
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)         output gate
    c' = f * c + i * g
    h' = o * tanh(c')
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from seqrnn.nn.cells import State
from seqrnn.nn.stack import RecurrentStack

# How the state meets the recurrent weights: ``(h [B, H], weight_hh [G*H, H]) -> [B, G*H]``.
Product = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def exact_product(h: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
    """``h @ weight_hh.T`` in the tensors' own precision (the cells' default)."""
    return h @ weight_hh.T


def gru_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor,
    bias_hh: torch.Tensor,
    product: Product = exact_product,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One GRU step: ``x [B, I]``, ``h [B, H]`` -> ``h' [B, H]``, gates ``r, z, n`` ``[B, H]``;
    ``product`` computes ``h W_hh^T`` (exactly, unless a precision is being measured)."""
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (product(h, weight_hh) + bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h, {"r": r, "z": z, "n": n}


def lstm_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor,
    bias_hh: torch.Tensor,
    product: Product = exact_product,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One LSTM step: ``x [B, I]``, ``h, c [B, H]`` -> ``h', c' [B, H]``, gates ``i, f, g, o``;
    ``product`` computes ``h W_hh^T`` (exactly, unless a precision is being measured)."""
    pre = x @ weight_ih.T + bias_ih + product(h, weight_hh) + bias_hh
    pre_i, pre_f, pre_g, pre_o = pre.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(pre_i), torch.sigmoid(pre_f), torch.tanh(pre_g), torch.sigmoid(pre_o)
    c = f * c + i * g
    return o * torch.tanh(c), c, {"i": i, "f": f, "g": g, "o": o}


def reference_forward(
    stack: RecurrentStack,
    x: torch.Tensor,
    state: State | None = None,
    product: Product = exact_product,
) -> tuple[torch.Tensor, State, list[dict[str, torch.Tensor]]]:
    """Run ``stack``'s weights through the reference cells, step by step, layer by layer.

    Dropout between layers is not applied (this is the evaluation-mode computation).

    Args:
        stack: supplies the weights, cell type and sizes.
        x: ``[B, T, I]``; state: as in :class:`~seqrnn.nn.RecurrentStack`, None = zeros.
        product: how each step's ``h W_hh^T`` is computed (GRU and LSTM cells), e.g. in a
            lower precision to measure what it costs.
    Returns:
        out: ``[B, T, H]`` top-layer outputs; state: final state as the stack returns it;
        trace: per layer, a dict name -> ``[B, T, H]``: the gates (r, z, n or i, f, g, o) and
        the states (h, and c for an LSTM) at every step; a registered cell's state parts.
    """
    if stack.step_cell is not None:  # a cell of one's own: its step is its reference
        trace: list[dict[str, torch.Tensor]] = []
        out, state = stack._steps(x, state, None, trace=trace)
        return out, state, trace
    if state is None:
        state = stack.initial_state(x.shape[0])
    h0, c0 = (state, None) if stack.cell == "gru" else state
    layer_input, final_h, final_c, gates = x, [], [], []
    for layer in range(stack.layers):
        weights = [
            getattr(stack.rnn, f"{kind}_l{layer}")
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        h = h0[layer]
        c = None if c0 is None else c0[layer]
        outputs, trace = [], []
        for t in range(x.shape[1]):
            if stack.cell == "gru":
                h, step_gates = gru_cell(layer_input[:, t], h, *weights, product)
            else:
                h, c, step_gates = lstm_cell(layer_input[:, t], h, c, *weights, product)
                step_gates["c"] = c
            step_gates["h"] = h
            outputs.append(h)
            trace.append(step_gates)
        layer_input = torch.stack(outputs, dim=1)
        gates.append({name: torch.stack([g[name] for g in trace], dim=1) for name in trace[0]})
        final_h.append(h)
        final_c.append(c)
    h_n = torch.stack(final_h)
    return layer_input, (h_n if stack.cell == "gru" else (h_n, torch.stack(final_c))), gates
