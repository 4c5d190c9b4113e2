"""Completing images whose end is hidden, with a next-pixel predictor.

The study: take test images, hide their last ``hidden`` pixels, and let the model generate the
first ``n`` hidden pixels after the visible prefix, for several ``n`` (1, 10, 28, 300 by default).
All images x samples run as one batch. Because a completion of ``n`` pixels is, in distribution,
the first ``n`` pixels of a longer completion, one run of ``max(n)`` steps serves every ``n``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from seqrnn.errors import ConfigError, require_int
from seqrnn.files import write_json_atomic
from seqrnn.layout import COMPLETION_FILE, COMPLETION_SUMMARY, FIGURES_DIR, IMAGE_SIDE
from seqrnn.models import NextPixelPredictor
from seqrnn.studies.figures import image_grid, render, save_figures


@dataclass
class MaskedSet:
    """Images with their last ``hidden`` pixels hidden.

    Attributes:
        images: ``[N, T]`` long in {0, 1}, the ground truth (hidden part included).
        labels: ``[N]`` digit labels.
        index: ``[N]`` positions of the images in the split they came from.
        hidden: how many pixels at the end are hidden.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    hidden: int

    @property
    def visible(self) -> int:
        return self.images.shape[1] - self.hidden

    @property
    def prefixes(self) -> torch.Tensor:
        """``[N, visible]``: what the model is shown."""
        return self.images[:, : self.visible]


def make_masked_set(
    images: torch.Tensor, labels: torch.Tensor, count: int = 100, hidden: int = 300, seed: int = 0
) -> MaskedSet:
    """Draw ``count`` images (without replacement, reproducibly from ``seed``) and hide their
    last ``hidden`` pixels. ``images``: ``[N, T]`` or ``[N, T, 1]`` in {0, 1}."""
    images = images.reshape(len(images), -1)
    require_int("count", count, 1)
    if count > len(images):
        raise ConfigError(f"count={count} is not allowed; the split has {len(images)} images")
    if not 1 <= hidden < images.shape[1]:
        raise ConfigError(
            f"hidden={hidden} is not allowed; it must be between 1 and {images.shape[1] - 1}"
        )
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    index = index.sort().values
    return MaskedSet(images[index].long(), labels[index], index, hidden)


def check_horizons(horizons: list[int], hidden: int) -> list[int]:
    """The horizons, sorted, if each is in 1..hidden; else a ConfigError naming the bad one."""
    for n in horizons:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= hidden:
            raise ConfigError(
                f"horizons={list(horizons)}: n={n} is not allowed; each n must be an integer "
                f"from 1 to the hidden part (hidden={hidden})"
            )
    return sorted(set(horizons))


@dataclass
class Completions:
    """Everything generated for a masked set, for the largest horizon.

    Attributes:
        samples: ``[N, S, H]`` sampled pixels (``H`` = the largest horizon).
        sample_log_probs: ``[N, S, H]`` log p of each sampled pixel under the model.
        greedy: ``[N, H]`` the greedy (p > 0.5) completion.
        truth_log_probs: ``[N, H]`` log p of each ground-truth pixel given the true prefix
            (teacher forcing: one fused pass over the real image).
        truth: ``[N, H]`` the ground-truth pixels.
    """

    samples: torch.Tensor
    sample_log_probs: torch.Tensor
    greedy: torch.Tensor
    truth_log_probs: torch.Tensor
    truth: torch.Tensor


@torch.no_grad()
def complete(
    model: NextPixelPredictor,
    masked: MaskedSet,
    horizon: int,
    samples: int = 10,
    generator: torch.Generator | None = None,
) -> Completions:
    """Sample ``samples`` completions of ``horizon`` pixels per image (one batch of N x S), the
    greedy completion, and the ground truth's log-probabilities under ``model``."""
    check_horizons([horizon], masked.hidden)
    require_int("samples", samples, 1)
    model.eval()
    n, visible = len(masked.images), masked.visible
    prefixes = masked.prefixes.to(model.device)
    sampled = model.continue_sequences(prefixes, horizon, generator=generator, repeats=samples)
    greedy = model.continue_sequences(prefixes, horizon, greedy=True)
    images = masked.images.to(model.device)
    truth = images[:, visible : visible + horizon]
    logits = model(images)[:, visible : visible + horizon]
    truth_log_probs = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, truth.float(), reduction="none"
    )
    return Completions(
        samples=sampled.pixels.reshape(n, samples, horizon).cpu(),
        sample_log_probs=sampled.log_probs().reshape(n, samples, horizon).cpu(),
        greedy=greedy.pixels.cpu(),
        truth_log_probs=truth_log_probs.cpu(),
        truth=truth.cpu(),
    )


def horizon_table(completions: Completions, horizons: list[int]) -> list[dict[str, Any]]:
    """One row per ``n``: mean per-pixel cross-entropy (nats) of the first ``n`` generated
    pixels under the model (over samples and images), of the ground truth's, and the per-pixel
    accuracy of the greedy completion and of the samples against the ground truth."""
    rows = []
    for n in horizons:
        truth = completions.truth[:, :n]
        rows.append(
            {
                "n": n,
                "samples_ce": -completions.sample_log_probs[:, :, :n].mean().item(),
                "truth_ce": -completions.truth_log_probs[:, :n].mean().item(),
                "greedy_acc": (completions.greedy[:, :n] == truth).float().mean().item(),
                "samples_acc": (completions.samples[:, :, :n] == truth[:, None])
                .float()
                .mean()
                .item(),
            }
        )
    return rows


def pick_examples(completions: Completions, min_ink: int = 20) -> dict[str, int]:
    """Positions (in the masked set) of three images chosen by the numbers.

    - ``success``: the lowest error, where the error of an image is the fraction of its hidden
      ground-truth ink the samples get wrong (mean Hamming distance to the truth over the
      number of on-pixels in the truth); only images with at least ``min_ink`` on-pixels in the
      hidden part compete, so an empty bottom does not count as a success;
    - ``failure``: the highest such error, over all images;
    - ``high_variance``: the largest disagreement between samples (mean pairwise Hamming
      distance between them).
    """
    truth = completions.truth
    ink = truth.sum(dim=1).float()
    wrong = (completions.samples != truth[:, None]).float().sum(dim=2).mean(dim=1)
    error = wrong / ink.clamp_min(1)
    candidates = ink >= min_ink
    if not candidates.any():
        candidates = torch.ones_like(candidates)
    success = torch.where(candidates, error, torch.inf).argmin()
    return {
        "success": int(success),
        "failure": int(error.argmax()),
        "high_variance": int(sample_disagreement(completions.samples).argmax()),
    }


def sample_disagreement(samples: torch.Tensor) -> torch.Tensor:
    """``[N, S, H]`` -> ``[N]``: mean Hamming distance over all pairs of distinct samples."""
    s = samples.shape[1]
    if s < 2:
        return torch.zeros(samples.shape[0])
    ones = samples.float().sum(dim=1)  # per pixel: how many samples drew a 1
    pairs_differing = ones * (s - ones)  # ordered pairs (i, j) with i drew 1, j drew 0
    return pairs_differing.sum(dim=1) / (s * (s - 1) / 2)


def completion_figures(
    masked: MaskedSet,
    completions: Completions,
    horizons: list[int],
    picks: dict[str, int],
    shown_samples: int = 5,
    overview_images: int = 8,
    reading: torch.Tensor | None = None,
) -> dict[str, Figure]:
    """The study's figures, by file stem: one per picked example (rows: n; columns: ground
    truth, masked input, greedy completion, samples) and an overview of n-step prediction.
    ``reading``: the image pixel of each step (a permuted-order model), as :func:`render`."""
    visible, shown = masked.visible, min(shown_samples, completions.samples.shape[1])

    def draw(pixels: torch.Tensor, seen: int, generated: int = 0) -> np.ndarray:
        return render(pixels, seen, generated, reading)

    def with_completion(i: int, pixels: torch.Tensor, n: int) -> np.ndarray:
        image = masked.images[i].clone()
        image[visible : visible + n] = pixels[:n]
        return draw(image, visible, n)

    figures = {}
    for name, i in picks.items():
        rows = [
            [
                draw(masked.images[i], len(masked.images[i])),
                draw(masked.images[i], visible),
                with_completion(i, completions.greedy[i], n),
            ]
            + [with_completion(i, completions.samples[i, s], n) for s in range(shown)]
            for n in horizons
        ]
        figures[f"example_{name}"] = image_grid(
            rows,
            [f"n={n}" for n in horizons],
            ["truth", "masked", "greedy", *(f"sample {s + 1}" for s in range(shown))],
            title=f"{name.replace('_', ' ')}: test image {int(masked.index[i])} "
            f"(label {int(masked.labels[i])})",
        )
    columns = range(min(overview_images, len(masked.images)))
    rows = [[draw(masked.images[i], visible) for i in columns]]
    rows += [[with_completion(i, completions.samples[i, 0], n) for i in columns] for n in horizons]
    rows += [[draw(masked.images[i], len(masked.images[i])) for i in columns]]
    figures["horizons"] = image_grid(
        rows,
        ["masked", *(f"{n}-step" for n in horizons), "truth"],
        [f"#{int(masked.index[i])}" for i in columns],
        title="n-step prediction after the visible prefix (one sample each)",
    )
    return figures


def scratch_figure(
    model: NextPixelPredictor, count: int, generator=None, reading: torch.Tensor | None = None
) -> Figure:
    """Whole images generated from nothing, ``count`` of them in a grid."""
    pixels = model.continue_sequences(
        torch.zeros(count, 0, device=model.device), IMAGE_SIDE * IMAGE_SIDE, generator=generator
    ).pixels.cpu()
    cols = min(count, 8)
    images = [render(pixels[i], 0, IMAGE_SIDE * IMAGE_SIDE, reading) for i in range(count)]
    # rows of 8; the last may be shorter
    rows = [images[start : start + cols] for start in range(0, count, cols)]
    return image_grid(rows, [""] * len(rows), [""] * cols, title="whole images from scratch")


def run_completion(
    model: NextPixelPredictor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    out_dir: str | Path,
    count: int = 100,
    hidden: int = 300,
    horizons: tuple[int, ...] = (1, 10, 28, 300),
    samples: int = 10,
    shown_samples: int = 5,
    scratch: int = 16,
    min_ink: int = 20,
    seed: int = 0,
    checkpoint: str | None = None,
    reading: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The whole completion study; writes into ``out_dir``:

    - ``completion.json``: settings, the table (one row per n), the picked examples;
    - ``summary.md``: the table and the figures, for reading;
    - ``figures/*.png`` and ``tensorboard/`` (the same figures, and the table as text).

    ``test_images`` are in the model's reading order; for a model trained in permuted order
    ``reading`` (``[784]``, the image pixel of each step) puts them back in their places in the
    figures, and the hidden pixels are the last ``hidden`` that the model reads.

    Returns the content of ``completion.json``.
    """
    out_dir = Path(out_dir)
    horizons = check_horizons(list(horizons), hidden)
    masked = make_masked_set(test_images, test_labels, count, hidden, seed)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    started = time.perf_counter()
    completions = complete(model, masked, max(horizons), samples, generator)
    seconds = time.perf_counter() - started
    table = horizon_table(completions, horizons)
    picks = pick_examples(completions, min_ink)
    figures = completion_figures(masked, completions, horizons, picks, shown_samples, 8, reading)
    if scratch > 0:
        figures["scratch"] = scratch_figure(model, scratch, generator, reading)

    report = {
        "checkpoint": checkpoint,
        "count": count,
        "hidden": hidden,
        "visible": masked.visible,
        "samples": samples,
        "seed": seed,
        "sampling_seconds": round(seconds, 2),
        "table": table,
        "examples": {
            name: {"test_index": int(masked.index[i]), "label": int(masked.labels[i])}
            for name, i in picks.items()
        },
        "figures": [f"{FIGURES_DIR}/{name}.png" for name in figures],
    }
    summary = summary_markdown(report)
    save_figures(out_dir, figures, "completion", texts={"summary": summary})
    (out_dir / COMPLETION_SUMMARY).write_text(summary)
    write_json_atomic(out_dir / COMPLETION_FILE, report)
    return report


def summary_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Image completion",
        "",
        f"Checkpoint `{report['checkpoint']}`: {report['count']} test images (seed "
        f"{report['seed']}) with their last {report['hidden']} pixels hidden; "
        f"{report['samples']} sampled completions per image. Cross-entropies are mean nats per "
        "pixel over the first n hidden pixels: of the model's own samples (how sure it is of "
        "what it drew) and of the ground truth (how well it predicts the real pixels).",
        "",
        "| n | samples CE | ground-truth CE | greedy accuracy | samples accuracy |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['n']} | {r['samples_ce']:.4f} | {r['truth_ce']:.4f} | {r['greedy_acc']:.4f} "
        f"| {r['samples_acc']:.4f} |"
        for r in report["table"]
    ]
    lines += [
        "",
        "Examples picked by the numbers: "
        + ", ".join(
            f"{name} = test image {e['test_index']} (label {e['label']})"
            for name, e in report["examples"].items()
        ),
        "",
    ]
    lines += [f"![{Path(path).stem}]({path})" for path in report["figures"]]
    return "\n".join(lines) + "\n"
