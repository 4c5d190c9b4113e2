"""Trained weights shipped with seqrnn: ``<task>-<cell>-<layers>x<units>.ckpt``.

Each file is a Lightning checkpoint without optimizer or loop state (the weights, the model's
and the data's hyperparameters, the task), loadable with ``<ModelClass>.load_from_checkpoint``;
entry points that take ``ckpt=`` take ``ckpt=pretrained:<name>`` too. How each was trained and
what it scores: docs/results/.
"""

from __future__ import annotations

from pathlib import Path

from seqrnn.layout import run_name

PRETRAINED_DIR = Path(__file__).resolve().parent
PREFIX = "pretrained:"


def shipped() -> list[str]:
    """Names of the shipped checkpoints, sorted."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.ckpt"))


def pretrained_name(task: str, cell: str, layers: int, units: int, order: str = "pixel") -> str:
    """The shipped name of a configuration, e.g. ``classify-gru-1x128``, or
    ``classify-gru-1x128-permuted`` for one trained in permuted order."""
    return run_name(task, cell, f"{layers}x{units}", order)
