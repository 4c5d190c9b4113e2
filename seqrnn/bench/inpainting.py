"""In-painting speed: the exact posterior with prefix sharing against brute force.

The workload of ``experiments.inpaint dataset=two_by_two``: ``count`` images, one hidden 2x2
window each, 16 candidate fillings. ``shared`` is
:func:`seqrnn.models.inpainting.posteriors` (pixels before the window read once per image,
the state copied to the 16 candidates, which then read on from the window); ``brute`` scores
the 16 completed images with full passes. Both batch ``max_sequences`` sequences at a time. The
images and windows are MNIST's (stroke placement) when the data is found, else random images
with windows anywhere (reported in the JSON).
"""

from __future__ import annotations

from typing import Any

import torch

from seqrnn.bench.common import device, timed
from seqrnn.data import MNISTSequenceDataModule
from seqrnn.errors import DataError
from seqrnn.models import NextPixelPredictor
from seqrnn.models.inpainting import candidates, posteriors
from seqrnn.studies.inpainting import build_set

QUICK = {"count": 40}


@torch.no_grad()
def brute_force(model: NextPixelPredictor, images: torch.Tensor, max_sequences: int) -> None:
    """Score every filling of every image with a full pass (images share one hidden count)."""
    hidden = images < 0
    k = int(hidden[0].sum())
    fillings = candidates(k)
    filled = images.long().clamp(min=0).repeat_interleave(len(fillings), dim=0)
    positions = hidden.nonzero()[:, 1].reshape(len(images), k)
    rows = torch.arange(len(filled))[:, None]
    filled[rows, positions.repeat_interleave(len(fillings), 0)] = fillings.repeat(len(images), 1)
    for chunk in filled.split(max_sequences):
        model.log_prob(chunk.to(model.device))


def test_images(count: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """MNIST's binarized test images when the files are found, else random ones."""
    try:
        datamodule = MNISTSequenceDataModule(download=False)
        datamodule.setup()
        images, labels = datamodule.splits["test"]
        return images.reshape(len(images), -1), labels, "mnist test, stroke placement"
    except DataError:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 2, (count, 784), generator=gen, dtype=torch.uint8)
        return images, torch.zeros(count, dtype=torch.long), "random images, uniform placement"


def run(
    cell: str = "gru", units: int = 128, count: int = 1000, max_sequences: int = 512
) -> dict[str, Any]:
    dev = device()
    images, labels, source = test_images(count)
    placement = "stroke" if source.startswith("mnist") else "uniform"
    dataset = build_set(images, labels, "two_by_two", count, placement, seed=0)
    first = (dataset.images < 0).float().argmax(dim=1)
    torch.manual_seed(0)
    model = NextPixelPredictor(cell=cell, units=units).to(dev).eval()
    shared_s = timed(lambda: posteriors(model, dataset.images, max_sequences), dev)
    brute_s = timed(lambda: brute_force(model, dataset.images, max_sequences), dev)
    # Steps each way reads: brute 16 x 784 per image; shared the prefix once, 16 x the rest.
    brute_steps = 16 * 784 * count
    shared_steps = int((first + 1).sum() + 16 * (783 - first).sum())
    row = {
        "cell": cell,
        "units": units,
        "images": count,
        "candidates": 16,
        "shared_s": round(shared_s, 2),
        "brute_s": round(brute_s, 2),
        "speedup": round(brute_s / shared_s, 2),
        "step_ratio": round(brute_steps / shared_steps, 2),
        "mean_first_hidden": round(float(first.float().mean()), 1),
    }
    print(
        f"{cell}-{units}: shared {row['shared_s']} s, brute force {row['brute_s']} s "
        f"({row['speedup']}x; the step count allows {row['step_ratio']}x)",
        flush=True,
    )
    return {"source": source, "max_sequences": max_sequences, "rows": [row]}
