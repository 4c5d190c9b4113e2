"""Figures of images and completions (matplotlib's object API: no pyplot state, no display).

Colours: a seen pixel is white ink on black, as MNIST is usually shown; a pixel the model
generated is orange ink on dark blue; a pixel still hidden is grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from seqrnn.layout import FIGURES_DIR, IMAGE_SIDE, TENSORBOARD_DIR

COLOURS = {
    "seen": (np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])),  # (off, on)
    "generated": (np.array([0.08, 0.12, 0.35]), np.array([1.0, 0.62, 0.1])),
    "hidden": np.array([0.5, 0.5, 0.5]),
}


def render(
    pixels: torch.Tensor, seen: int, generated: int = 0, reading: torch.Tensor | None = None
) -> np.ndarray:
    """An RGB image ``[28, 28, 3]`` of a pixel sequence ``[784]``: the first ``seen`` pixels as
    seen, the next ``generated`` as generated, the rest hidden. ``reading``: ``[784]`` the image
    pixel of each step, for a sequence in permuted order; None: step t is pixel t."""
    values = pixels.reshape(-1).float().numpy()[:, None]
    rgb = np.tile(COLOURS["hidden"], (values.shape[0], 1))
    for kind, lo, hi in (("seen", 0, seen), ("generated", seen, seen + generated)):
        off, on = COLOURS[kind]
        rgb[lo:hi] = off + values[lo:hi] * (on - off)
    if reading is not None:  # each step's colour to its place in the image
        placed = np.empty_like(rgb)
        placed[reading.numpy()] = rgb
        rgb = placed
    return rgb.reshape(IMAGE_SIDE, IMAGE_SIDE, 3)


def render_posterior(image: torch.Tensor, marginals: torch.Tensor, positions) -> np.ndarray:
    """An RGB image of ``image`` ``[784]`` whose pixels at ``positions`` show their posterior
    p(x = 1) as a grey level (black 0, white 1)."""
    rgb = render(image.clamp(min=0), IMAGE_SIDE * IMAGE_SIDE).reshape(-1, 3)
    for p, pixel in zip(marginals.tolist(), positions, strict=True):
        rgb[int(pixel)] = p
    return rgb.reshape(IMAGE_SIDE, IMAGE_SIDE, 3)


def crop_around(rgb: np.ndarray, pixels, size: int = 10) -> tuple[np.ndarray, list]:
    """A ``size`` x ``size`` window of ``rgb`` centred on ``pixels`` (indices into the 784),
    and those pixels' ``(y, x)`` in the window: a zoom on what was hidden."""
    ys, xs = zip(*(divmod(int(p), IMAGE_SIDE) for p in pixels), strict=True)
    top = min(max((min(ys) + max(ys)) // 2 - size // 2 + 1, 0), IMAGE_SIDE - size)
    left = min(max((min(xs) + max(xs)) // 2 - size // 2 + 1, 0), IMAGE_SIDE - size)
    window = rgb[top : top + size, left : left + size]
    return window, [(y - top, x - left) for y, x in zip(ys, xs, strict=True)]


def image_grid(
    cells: Sequence[Sequence[np.ndarray]],
    row_titles: Sequence[str],
    col_titles: Sequence[str],
    title: str = "",
    size: float = 1.3,
    outlines: Sequence[Sequence[Sequence[tuple[int, int]]]] | None = None,
) -> Figure:
    """A figure of ``cells[r][c]`` RGB images with row and column titles; ``outlines[r][c]``
    lists pixels ``(y, x)`` of that image to frame in red. A row shorter than the first leaves
    its last places empty."""
    rows, cols = len(cells), len(cells[0])
    fig = Figure(figsize=(size * cols + 1.2, size * rows + 0.8), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(cells[r]):
                ax.set_axis_off()
                continue
            ax.imshow(cells[r][c], interpolation="nearest")
            for y, x in outlines[r][c] if outlines else ():
                ax.add_patch(
                    Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2)
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_figures(
    out_dir: Path, figures: dict[str, Figure], tag: str, texts: dict[str, str] | None = None
) -> list[str]:
    """Write each figure to ``out_dir/figures/<name>.png`` and to TensorBoard (in
    ``out_dir/tensorboard``, as ``<tag>/<name>``, with ``texts`` beside them); return the PNG
    paths relative to ``out_dir``."""
    from torch.utils.tensorboard import SummaryWriter

    (out_dir / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR))
    for name, figure in figures.items():
        figure.savefig(out_dir / FIGURES_DIR / f"{name}.png", dpi=100)
        writer.add_figure(f"{tag}/{name}", figure, close=False)
    for name, text in (texts or {}).items():
        writer.add_text(f"{tag}/{name}", text)
    writer.close()
    return [f"figures/{name}.png" for name in figures]
