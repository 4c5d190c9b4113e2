"""Output heads that sit on the recurrent stack."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from seqrnn.errors import require_int


class MLPHead(nn.Sequential):
    """Linear layers with ReLU between them: ``in -> hidden[0] -> ... -> out``.

    With no hidden layers it is one Linear. It acts on the last dimension, so it serves a
    per-step head on ``[B, T, H]`` as well as a per-sequence head on ``[B, H]``.

    Args:
        in_features: size of the stack output it reads (``units``).
        hidden: widths of the hidden layers.
        out_features: number of outputs (logits).
        batchnorm: BatchNorm on each hidden layer, before its ReLU (``[B, H]`` inputs only);
            in the classifier's head it was essential in one reference report.

    Shape: ``[..., in_features]`` -> ``[..., out_features]``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        batchnorm: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, require_int("head_hidden", size, 1)))
            if batchnorm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            width = size
        layers.append(nn.Linear(width, require_int("out_features", out_features, 1)))
        super().__init__(*layers)
