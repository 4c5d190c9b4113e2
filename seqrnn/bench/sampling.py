"""Sampling speed: completing images with a carried state against re-running the prefix.

The completion study's workload: ``images x samples`` sequences in one batch, each continued by
``steps`` pixels after its image's ``prefix``-pixel prefix. ``carried`` is
:meth:`~seqrnn.models.NextPixelPredictor.continue_sequences` as the study calls it (each image's
prefix once through the fused kernel, its state copied to the samples, then one recurrent step
per pixel); ``naive`` runs the whole sequence so far through the model for every new pixel, as a
sampler without access to the state must.
"""

from __future__ import annotations

from typing import Any

import torch

from seqrnn.bench.common import device, timed
from seqrnn.models import NextPixelPredictor

QUICK = {"steps": 20}


@torch.no_grad()
def naive_continue(model: NextPixelPredictor, prefix: torch.Tensor, steps: int, generator):
    """Continue ``prefix [B, P]`` by ``steps`` sampled pixels, re-reading everything each time."""
    sequence = prefix.float()
    pad = sequence.new_zeros(len(sequence), 1)  # a slot for the pixel to predict
    for _ in range(steps):
        p = torch.sigmoid(model(torch.cat([sequence, pad], dim=1))[:, -1])
        sequence = torch.cat([sequence, torch.bernoulli(p, generator=generator)[:, None]], dim=1)
    return sequence[:, prefix.shape[1] :].long()


def run(
    cell: str = "gru",
    units: int = 32,
    images: int = 100,
    samples: int = 10,
    prefix: int = 484,
    steps: int = 300,
) -> dict[str, Any]:
    """Time both ways on the same model and prefixes; also the carried way at 128 units."""
    dev = device()
    gen = torch.Generator().manual_seed(0)
    prefixes = torch.randint(0, 2, (images, prefix), generator=gen).to(dev)
    rows = []
    for width, with_naive in ((units, True), (128, False)):
        torch.manual_seed(0)
        model = NextPixelPredictor(cell=cell, units=width).to(dev).eval()
        generator = torch.Generator(device=dev).manual_seed(0)
        row: dict[str, Any] = {
            "cell": cell,
            "units": width,
            "sequences": images * samples,
            "steps": steps,
        }

        def carried(m=model, g=generator):
            m.continue_sequences(prefixes, steps, generator=g, repeats=samples)

        def naive(m=model, g=generator):
            naive_continue(m, prefixes.repeat_interleave(samples, dim=0), steps, g)

        carried_s = timed(carried, dev)
        row["carried_s"] = round(carried_s, 4)
        if with_naive:
            naive_s = timed(naive, dev)
            row["naive_s"] = round(naive_s, 4)
            row["speedup"] = round(naive_s / carried_s, 1)
        rows.append(row)
        print(
            f"{cell}-{width}: carried {row['carried_s']} s"
            + (f", naive {row['naive_s']} s ({row['speedup']}x)" if with_naive else ""),
            flush=True,
        )
    return {"images": images, "samples": samples, "prefix": prefix, "rows": rows}
