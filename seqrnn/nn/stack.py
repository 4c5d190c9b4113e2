"""The recurrent stack every model is built on: GRU or LSTM layers on fused kernels, or the
layers of a cell of one's own (:mod:`seqrnn.nn.cells`) on a step loop.

Backends of the built-in cells: ``torch`` runs ``nn.GRU`` / ``nn.LSTM`` (cuDNN on a GPU,
ATen/oneDNN on a CPU); ``fused`` runs the layers on the CPU through this project's own C++
forward and backward (:mod:`seqrnn.nn.fused`), and is an error where they cannot run (no
compiler, a GPU tensor, a cell without them); ``auto`` takes ``fused`` on a CPU when it is built
and verified, else ``torch``. All read the same parameters: checkpoints do not depend on it.
"""

from __future__ import annotations

import torch
from torch import nn

from seqrnn.errors import ConfigError, require_choice, require_int
from seqrnn.nn.cells import BUILTIN_CELLS, State, resolve_cell, run_steps, zero_state
from seqrnn.nn.fused import extension, run_fused

CELLS = tuple(BUILTIN_CELLS)  # the built-in ones; seqrnn.nn.cells.cell_names() lists them all
RECURRENT_INITS = ("orthogonal", "default")
GATE_BIAS_INITS = ("constant", "chrono")
BACKENDS = ("auto", "torch", "fused")


class RecurrentStack(nn.Module):
    r"""A stack of ``layers`` recurrent layers of ``units`` each: GRU, LSTM or a registered cell.

    For ``gru`` and ``lstm`` the parameters are those of one ``nn.GRU`` / ``nn.LSTM``
    (``batch_first=True``), so the ``state_dict`` is that module's (``rnn.weight_ih_l0`` ...)
    whichever backend runs it. A full :meth:`forward` runs on cuDNN on a GPU and, on a CPU, on the
    fused kernels of :mod:`seqrnn.nn.fused` (``backend="auto"``) or ``nn.GRU`` / ``nn.LSTM``. A
    registered :class:`~seqrnn.nn.cells.StepCell` keeps one cell per layer in ``cells``
    (``cells.0.<its parameters>``) and runs on :func:`~seqrnn.nn.cells.run_steps` on any device.

    Every pass takes an optional ``input_proj``, the model's input affine map (``[B, T, F]`` ->
    ``[B, T, I]``), applied first; the fused forward folds it into the first layer.

    Args:
        cell: ``"gru"``, ``"lstm"``, a registered cell's name or a StepCell class path
            (:func:`~seqrnn.nn.cells.resolve_cell`).
        input_size: features per step I.
        units: hidden units per layer H.
        layers: number of stacked layers L.
        dropout: dropout on the outputs of every layer but the last (training only).
        recurrent_init: ``"orthogonal"`` draws each gate's ``[H, H]`` block of the recurrent
            weights as an orthogonal matrix (keeps the gradient norm through many steps);
            ``"default"`` keeps PyTorch's uniform init.
        forget_bias: LSTM only: the forget-gate bias, so a fresh LSTM starts by remembering
            (with ``gate_bias_init="constant"``).
        gate_bias_init: ``"constant"``: PyTorch's biases (plus ``forget_bias`` for an LSTM);
            ``"chrono"`` (Tallec & Ollivier, 2018): the bias of the gate that keeps the old state
            (the GRU's update gate z, the LSTM's forget gate f) is drawn per unit as
            ``log(u)``, ``u ~ U(1, chrono_steps - 1)`` (the LSTM's input gate gets minus that),
            so units start with memory spans spread up to ``chrono_steps`` steps.
        chrono_steps: the longest span ``"chrono"`` aims at (the sequence length, 784 for
            pixels).
        backend: ``"auto"``, ``"torch"`` or ``"fused"`` (see the module docstring); ``fused``
            is an error where the fused kernels cannot run.

    Inputs: x, state
        x: ``[B, T, I]``.
        state: GRU ``h`` of ``[L, B, H]``; LSTM ``(h, c)``, each ``[L, B, H]``; a registered
            cell's: one ``[L, B, H]`` per name of its ``state_names``; None = zeros.

    Outputs: out, state
        out: ``[B, T, H]``, the top layer's output at every step.
        state: the state after the last step, shaped as the input state.
    """

    def __init__(
        self,
        cell: str = "gru",
        input_size: int = 1,
        units: int = 128,
        layers: int = 1,
        dropout: float = 0.0,
        recurrent_init: str = "orthogonal",
        forget_bias: float = 1.0,
        backend: str = "auto",
        gate_bias_init: str = "constant",
        chrono_steps: int = 784,
    ) -> None:
        super().__init__()
        resolved = resolve_cell(cell)
        self.step_cell = None if isinstance(resolved, str) else resolved
        # the cell's name (a class path given as cell= is known by the class's name)
        self.cell = resolved if self.step_cell is None else self.step_cell.name
        self.backend = require_choice("backend", backend, BACKENDS)
        if self.backend == "fused" and self.step_cell is not None:
            raise ConfigError(
                f"backend='fused' is not allowed for cell={self.cell!r}: only "
                f"{', '.join(CELLS)} have fused kernels; use backend=auto"
            )
        self.units = require_int("units", units, 1)
        self.layers = require_int("layers", layers, 1)
        self.input_size = require_int("input_size", input_size, 1)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout={dropout!r} is not allowed; it must be in [0, 1)")
        self.recurrent_init = require_choice("recurrent_init", recurrent_init, RECURRENT_INITS)
        self.forget_bias = forget_bias
        self.gate_bias_init = require_choice("gate_bias_init", gate_bias_init, GATE_BIAS_INITS)
        self.chrono_steps = require_int("chrono_steps", chrono_steps, 3)
        self.dropout = dropout if layers > 1 else 0.0
        if self.step_cell is None:
            self.rnn = BUILTIN_CELLS[self.cell](
                input_size, units, num_layers=layers, batch_first=True, dropout=self.dropout
            )
        else:
            self.cells = nn.ModuleList(
                self.step_cell(input_size if layer == 0 else units, units)
                for layer in range(layers)
            )
        self.reset_parameters()

    @property
    def gates(self) -> int:
        """Gate blocks stacked in each weight matrix: GRU 3 (r, z, n), LSTM 4 (i, f, g, o)."""
        return 3 if self.cell == "gru" else 4

    @property
    def state_names(self) -> tuple[str, ...]:
        """The parts of a layer's state: ``("h",)`` (GRU), ``("h", "c")`` (LSTM), or a cell's."""
        if self.step_cell is not None:
            return self.step_cell.state_names
        return ("h",) if self.cell == "gru" else ("h", "c")

    def reset_parameters(self) -> None:
        if self.step_cell is not None:
            for cell in self.cells:
                if hasattr(cell, "reset_parameters"):
                    cell.reset_parameters()
                if self.gate_bias_init == "chrono":
                    cell.init_gate_biases(self._chrono_spans())
            return
        self.rnn.reset_parameters()
        with torch.no_grad():
            for layer in range(self.layers):
                if self.recurrent_init == "orthogonal":
                    for block in getattr(self.rnn, f"weight_hh_l{layer}").chunk(self.gates, dim=0):
                        nn.init.orthogonal_(block)
                self._init_gate_biases(layer)

    def _init_gate_biases(self, layer: int) -> None:
        # The input and recurrent biases add up: set the sum in b_ih and zero b_hh's block.
        b_ih = getattr(self.rnn, f"bias_ih_l{layer}").chunk(self.gates)
        b_hh = getattr(self.rnn, f"bias_hh_l{layer}").chunk(self.gates)
        # the gate that keeps the old state: GRU blocks (r, z, n) -> z; LSTM (i, f, g, o) -> f
        keep = 1
        if self.gate_bias_init == "chrono":
            spans = self._chrono_spans()
            b_ih[keep].copy_(spans.log())
            b_hh[keep].zero_()
            if self.cell == "lstm":  # input gate opposite to the forget gate
                b_ih[0].copy_(-spans.log())
                b_hh[0].zero_()
        elif self.cell == "lstm":
            b_ih[keep].fill_(self.forget_bias)
            b_hh[keep].zero_()

    def _chrono_spans(self) -> torch.Tensor:
        """Memory spans ``[H]`` drawn for ``gate_bias_init="chrono"``."""
        return torch.empty(self.units).uniform_(1.0, self.chrono_steps - 1)

    def initial_state(self, batch_size: int) -> State:
        """Zero state for ``batch_size`` sequences, on the stack's device."""
        like = next(self.parameters())
        return zero_state(self.state_names, self.layers, batch_size, self.units, like)

    def forward(
        self, x: torch.Tensor, state: State | None = None, input_proj: nn.Linear | None = None
    ) -> tuple[torch.Tensor, State]:
        """See the class docstring. ``input_proj``, when given, maps ``x`` ``[B, T, F]`` to the
        stack's input first; the fused backend folds it into the first layer's input weights
        (two affine maps in a row are one), so the per-step input work shrinks from ``I`` to
        ``F`` columns."""
        width = self.input_size if input_proj is None else input_proj.in_features
        if x.dim() != 3 or x.shape[-1] != width:
            raise ValueError(f"expected x of shape [B, T, {width}], got {list(x.shape)}")
        if self.step_cell is not None:
            return self._steps(x, state, input_proj)
        kernel = self.fused_kernel(x)
        if kernel is not None:
            return run_fused(self.rnn, x, state, kernel, input_proj)
        return self.rnn(x if input_proj is None else input_proj(x), state)

    def _steps(self, x, state, input_proj, lengths=None, trace=None):
        """A registered cell's pass: :func:`~seqrnn.nn.cells.run_steps` over every layer."""
        if input_proj is not None:
            x = input_proj(x)
        if state is None:
            state = self.initial_state(x.shape[0])
        return run_steps(self.cells, x, state, self.dropout, lengths, trace)

    @staticmethod
    def top_output(state: State) -> torch.Tensor:
        """The top layer's output at the last step, ``[B, H]``, read from a final state (``h[-1]``;
        an LSTM's ``h`` of ``(h, c)``): the same numbers as ``out[:, -1]``, but a loss that reads
        it leaves the outputs of the other steps without a gradient, and the fused backward then
        reads no ``[B, T, H]`` tensor of zeros."""
        h = state[0] if isinstance(state, tuple) else state
        return h[-1]

    def fused_kernel(self, x: torch.Tensor):
        """The compiled fused kernels if this forward runs on them, else None.

        Raises:
            ConfigError: ``backend="fused"`` where they cannot run (a tensor on a GPU, no
                working build on this machine).
        """
        if self.backend == "torch" or self.step_cell is not None:
            return None
        if x.device.type != "cpu":
            if self.backend == "fused":
                raise ConfigError(
                    f"backend='fused' is not allowed on {x.device.type}: the fused kernels "
                    "run on the CPU; use backend=auto (cuDNN on a GPU)"
                )
            return None
        kernel = extension()
        if kernel is None and self.backend == "fused":
            raise ConfigError(
                "backend='fused' is not allowed here: the fused kernels could not be built or "
                "failed their check on this machine (the warning above says why); use "
                "backend=auto"
            )
        return kernel

    def final_states(
        self, x: torch.Tensor, lengths: torch.Tensor, input_proj: nn.Linear | None = None
    ) -> State:
        """The state of each sequence after its own ``lengths[i]`` steps of ``x`` (``[B, T, I]``,
        or ``[B, T, F]`` with ``input_proj``; padding after them is ignored), from a zero state.

        Runs ``nn.GRU`` / ``nn.LSTM`` on a packed sequence: the fused kernels keep no state of
        sequences that end early. Returns a state as :meth:`forward` does; the top layer's
        output at each sequence's last step is ``h[-1]``.
        """
        if self.step_cell is not None:
            return self._steps(x, None, input_proj, lengths=lengths.to(x.device))[1]
        if input_proj is not None:
            x = input_proj(x)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, state = self.rnn(packed)
        return state

    def step(
        self, x_t: torch.Tensor, state: State | None = None, input_proj: nn.Linear | None = None
    ) -> tuple[torch.Tensor, State]:
        """Advance every sequence by one step with a carried state (for sampling), on
        ``nn.GRU`` / ``nn.LSTM`` (one step has no time loop for a fused kernel to save).

        Args:
            x_t: ``[B, I]`` (``[B, F]`` with ``input_proj``), the input of this step.
            state: as in :meth:`forward`; None = zeros.
        Returns:
            out: ``[B, H]``, the top layer's output; state: the new state.
        """
        if self.step_cell is not None:
            out, state = self._steps(x_t.unsqueeze(1), state, input_proj)
            return out.squeeze(1), state
        if input_proj is not None:
            x_t = input_proj(x_t)
        out, state = self.rnn(x_t.unsqueeze(1), state)
        return out.squeeze(1), state
