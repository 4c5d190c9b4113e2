"""Output heads that sit on the recurrent stack."""

from __future__ import annotations

from torch import nn

from seqrnn.errors import require_int


class ClassifierHead(nn.Sequential):
    """The classifier's "blue block": Linear -> [BatchNorm] -> ReLU -> Linear.

    Args:
        in_features: size of the stack output it reads (``units``).
        hidden: width of the hidden layer.
        classes: number of logits.
        batchnorm: normalise the hidden layer over the batch (one reference report found this
            essential for pixel-by-pixel MNIST; its running statistics are used at evaluation).

    Shape: ``[B, in_features]`` -> ``[B, classes]`` logits.
    """

    def __init__(self, in_features: int, hidden: int, classes: int, batchnorm: bool = False):
        require_int("head_hidden", hidden, 1)
        layers: list[nn.Module] = [nn.Linear(in_features, hidden)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Linear(hidden, require_int("classes", classes, 2))]
        super().__init__(*layers)
