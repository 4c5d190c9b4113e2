"""Exact BatchNorm statistics for evaluation ("precise BN").

A BatchNorm layer evaluates with running averages of the batch statistics, updated with momentum
0.1 while the weights move under it. On the classifier's head they lag badly: the last hidden
state of a 784-step RNN has a tiny variance (~0.003), BatchNorm scales it up ~20x, and a running
mean a few steps stale is half a standard deviation off. Measured on a GRU-128 after 300 steps:
76% validation accuracy with batch statistics, 34% with the running ones. Recomputing the
statistics as a plain average over a few training batches of the current weights closes the gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def refresh_batchnorm_statistics(
    module: nn.Module, batches: Iterable, forward: Callable[[object], object]
) -> int:
    """Set every BatchNorm's running mean and variance to their average over ``batches``.

    The rest of ``module`` runs in evaluation mode (no dropout), so the statistics are those the
    evaluation will see. ``forward(batch)`` runs the module on one batch. Returns the number of
    batches used (0 when the module has no BatchNorm: then nothing runs).
    """
    layers = batchnorm_layers(module)
    if not layers:
        return 0
    was_training = module.training
    momenta = [layer.momentum for layer in layers]
    module.eval()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # None: a cumulative average over the batches seen
        layer.train()
    used = 0
    for batch in batches:
        forward(batch)
        used += 1
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    module.train(was_training)
    return used
