"""Figures of images and completions (matplotlib's object API: no pyplot state, no display).

Colours: a seen pixel is white ink on black, as MNIST is usually shown; a pixel the model
generated is orange ink on dark blue; a pixel still hidden is grey.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

SIDE = 28
COLOURS = {
    "seen": (np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])),  # (off, on)
    "generated": (np.array([0.08, 0.12, 0.35]), np.array([1.0, 0.62, 0.1])),
    "hidden": np.array([0.5, 0.5, 0.5]),
}


def render(pixels: torch.Tensor, seen: int, generated: int = 0) -> np.ndarray:
    """An RGB image ``[28, 28, 3]`` of a pixel sequence ``[784]``: the first ``seen`` pixels as
    seen, the next ``generated`` as generated, the rest hidden."""
    values = pixels.reshape(-1).float().numpy()[:, None]
    rgb = np.tile(COLOURS["hidden"], (values.shape[0], 1))
    for kind, lo, hi in (("seen", 0, seen), ("generated", seen, seen + generated)):
        off, on = COLOURS[kind]
        rgb[lo:hi] = off + values[lo:hi] * (on - off)
    return rgb.reshape(SIDE, SIDE, 3)


def image_grid(
    cells: Sequence[Sequence[np.ndarray]],
    row_titles: Sequence[str],
    col_titles: Sequence[str],
    title: str = "",
    size: float = 1.3,
) -> Figure:
    """A figure of ``cells[r][c]`` RGB images with row and column titles."""
    rows, cols = len(cells), len(cells[0])
    fig = Figure(figsize=(size * cols + 1.2, size * rows + 0.8), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(cells[r][c], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
