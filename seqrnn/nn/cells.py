r"""The cell registry: what ``cell=`` names, and the step loop that runs a cell of one's own.

``gru`` and ``lstm`` are built in: :class:`~seqrnn.nn.RecurrentStack` runs them on
``nn.GRU`` / ``nn.LSTM`` (cuDNN on a GPU), on seqrnn's fused CPU kernels
(:mod:`seqrnn.nn.fused`), and checks them against reference cells written from the gate
equations (:mod:`seqrnn.nn.reference`).

A cell of one's own is one subclass of :class:`StepCell`: its step on ``[B, I]`` input and its
state, the names of its state's parts, and optionally its gate-bias init. Registered (the
:func:`register_cell` decorator, or by naming its class as ``cell=package.module.Class``), it
runs through :func:`run_steps`, a Python loop over time at reference-cell speed, in every task
and study: training, evaluation, sampling, in-painting and the state analysis. A minimal gated
cell, step by step: docs/extending.md.
"""

from __future__ import annotations

import importlib
from typing import ClassVar

import torch
from torch import nn

from seqrnn.errors import ConfigError

# The cells with fused kernels, cuDNN and reference cells, and their torch modules.
BUILTIN_CELLS: dict[str, type[nn.RNNBase]] = {"gru": nn.GRU, "lstm": nn.LSTM}
# State of a whole stack: one part ``[L, B, H]`` (a GRU's h), or a tuple of them (an LSTM's
# (h, c)); a cell of one's own has as many parts as its ``state_names``.
State = torch.Tensor | tuple[torch.Tensor, ...]


class StepCell(nn.Module):
    r"""One recurrent layer written as its step: subclass it for a cell of one's own.

    Class attributes:
        name: what ``cell=`` calls it (also results.json's ``cell``, the reports' rows).
        state_names: the parts of its state, each ``[B, H]``; the first is the layer's output
            at that step (``("h",)``; an LSTM-like cell: ``("h", "c")``).

    Args:
        input_size: features per step I (the first layer's input width, else ``units``).
        units: hidden units H.

    Inputs: x, state
        x: ``[B, I]``, this step's input.
        state: a tuple of ``len(state_names)`` tensors ``[B, H]``.

    Outputs: state
        the new state, a tuple of the same shapes; its first part is the output ``[B, H]``.
    """

    name: ClassVar[str] = ""
    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(self, input_size: int, units: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.units = units

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def init_gate_biases(self, spans: torch.Tensor) -> None:
        """``gate_bias_init="chrono"``: ``spans [H]``, memory spans drawn per unit in
        ``[1, chrono_steps - 1]``, for the gate that keeps the old state (a bias of
        ``log(spans)`` makes it start open for about that many steps). By default a cell keeps
        its own init."""


_REGISTERED: dict[str, type[StepCell]] = {}


def register_cell(cls: type[StepCell]) -> type[StepCell]:
    """Make ``cls`` a choice of ``cell=`` (usable as a class decorator); returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, StepCell)):
        raise ConfigError(f"{cls!r} is not a cell: a cell is a subclass of seqrnn.nn.StepCell")
    if not cls.name or cls.name in BUILTIN_CELLS or "." in cls.name:
        raise ConfigError(
            f"cell class {cls.__qualname__} needs a name of its own (not {cls.name!r}, not "
            f"{', '.join(BUILTIN_CELLS)}, no dots)"
        )
    _REGISTERED[cls.name] = cls
    return cls


def cell_names() -> tuple[str, ...]:
    """Every name ``cell=`` takes now: the built-in cells, then the registered ones."""
    return (*BUILTIN_CELLS, *sorted(_REGISTERED))


def resolve_cell(cell: str) -> str | type[StepCell]:
    """``cell`` as the stack builds it: a built-in name as given, else the registered class.

    ``cell`` may also be a class path (``package.module.Class``): importing it registers it,
    which is how a config (conf/cell/<name>.yaml: ``model.cell: package.module.Class``) and a
    checkpoint that holds that path find a cell that lives outside seqrnn.

    Raises:
        ConfigError: an unknown name, or a path that is not a :class:`StepCell`.
    """
    if cell in BUILTIN_CELLS:
        return cell
    if cell in _REGISTERED:
        return _REGISTERED[cell]
    if isinstance(cell, str) and "." in cell:
        module_name, _, class_name = cell.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"cell={cell!r} cannot be imported: {err}") from None
        return register_cell(found)
    raise ConfigError(
        f"cell={cell!r} is not allowed; choose one of: {', '.join(cell_names())} (or a "
        "StepCell class as package.module.Class)"
    )


def zero_state(names: tuple[str, ...], layers: int, batch: int, units: int, like: torch.Tensor):
    """A zero state of a stack whose cells have state parts ``names``: ``[L, B, H]`` each."""
    parts = tuple(like.new_zeros(layers, batch, units) for _ in names)
    return parts[0] if len(parts) == 1 else parts


def run_steps(
    cells: nn.ModuleList,
    x: torch.Tensor,
    state: State,
    dropout: float = 0.0,
    lengths: torch.Tensor | None = None,
    trace: list[dict[str, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, State]:
    """A stack of :class:`StepCell` layers over ``x`` ``[B, T, I]``, one step at a time.

    Args:
        state: as :func:`zero_state` makes it (``[L, B, H]``, or a tuple of them).
        dropout: on every layer's outputs but the last, when the cells are in training mode.
        lengths: ``[B]``: each sequence's state stops changing after its own length (the
            outputs past it are computed but not meant to be read).
        trace: if a list, gets one dict per layer: state part name -> ``[B, T, H]``.
    Returns:
        out: ``[B, T, H]``, the top layer's output; state: the final state, shaped as given.
    """
    parts = state if isinstance(state, tuple) else (state,)
    names = cells[0].state_names
    layer_input, finals = x, []
    for layer, cell in enumerate(cells):
        carried = tuple(part[layer] for part in parts)
        steps = []
        for t in range(x.shape[1]):
            new = tuple(cell(layer_input[:, t], carried))
            if lengths is not None:
                running = (t < lengths).unsqueeze(-1)
                new = tuple(
                    torch.where(running, n, old) for n, old in zip(new, carried, strict=True)
                )
            carried = new
            steps.append(carried)
        layer_input = torch.stack([s[0] for s in steps], dim=1)
        if trace is not None:
            trace.append(
                {name: torch.stack([s[i] for s in steps], dim=1) for i, name in enumerate(names)}
            )
        finals.append(carried)
        if layer + 1 < len(cells) and dropout > 0 and cell.training:
            layer_input = nn.functional.dropout(layer_input, dropout, training=True)
    stacked = tuple(torch.stack([f[i] for f in finals]) for i in range(len(names)))
    return layer_input, stacked[0] if len(stacked) == 1 else stacked
