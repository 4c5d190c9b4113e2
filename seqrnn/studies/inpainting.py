"""The in-painting study: sets of images with hidden pixels, the exact posteriors of those
pixels (:mod:`seqrnn.models.inpainting`) measured against the truth and against the past alone,
and its figures.

In-painting sets are ``[N, 784]`` int8 arrays with -1 where a pixel is hidden, stored as ``.npz``
with ``images``, and optionally ``targets`` (the ground truth) and ``labels``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from seqrnn.errors import ConfigError, DataError, require_choice, require_int
from seqrnn.files import write_json_atomic
from seqrnn.layout import (
    FIGURES_DIR,
    IMAGE_SIDE,
    INPAINT_FILE,
    POSTERIOR_FILE,
)
from seqrnn.models import NextPixelPredictor
from seqrnn.models.inpainting import Posterior, posteriors
from seqrnn.studies.figures import crop_around, image_grid, render, render_posterior, save_figures

KINDS = {"one_pixel": 1, "two_by_two": 2}  # kind -> side of the hidden square
PLACEMENTS = ("stroke", "uniform")
# The cap on hidden pixels per image: exact enumeration scores 2^k candidates per image.
DEFAULT_MAX_HIDDEN = 12


@dataclass
class InpaintingSet:
    """Images with hidden pixels.

    Attributes:
        images: ``[N, 784]`` int8: 0/1 where seen, -1 where hidden.
        targets: ``[N, 784]`` int8 ground truth (0/1), or None when unknown.
        labels: ``[N]`` digit labels, or None.
    """

    images: torch.Tensor
    targets: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    @property
    def hidden(self) -> torch.Tensor:
        """``[N, 784]`` bool: where pixels are hidden."""
        return self.images < 0

    @property
    def hidden_counts(self) -> torch.Tensor:
        return self.hidden.sum(dim=1)

    def save(self, path: str | Path) -> Path:
        arrays = {"images": self.images.numpy().astype(np.int8)}
        if self.targets is not None:
            arrays["targets"] = self.targets.numpy().astype(np.int8)
        if self.labels is not None:
            arrays["labels"] = self.labels.numpy()
        np.savez_compressed(path, **arrays)
        return Path(path)


def build_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    kind: str = "one_pixel",
    count: int = 1000,
    placement: str = "stroke",
    seed: int = 0,
) -> InpaintingSet:
    """Hide one pixel (``one_pixel``) or one 2x2 window (``two_by_two``) in each of ``count``
    images drawn reproducibly from ``images`` (``[N, 784]`` in {0, 1}).

    ``placement="stroke"`` draws the hidden spot among those on or next to the ink (the spot or
    its one-pixel border touches an on-pixel), where the model has something to decide;
    ``"uniform"`` draws it anywhere.
    """
    side = KINDS[require_choice("dataset", kind, KINDS)]
    require_choice("placement", placement, PLACEMENTS)
    images = images.reshape(len(images), -1).to(torch.int8)
    require_int("count", count, 1)
    if count > len(images):
        raise ConfigError(f"count={count} is not allowed; the split has {len(images)} images")
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(images), generator=generator)[:count].sort().values
    chosen = images[index]
    # Corners of every side x side window; a window "touches ink" when the window grown by one
    # pixel on each side holds an on-pixel.
    ink = chosen.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE).float()
    near_ink = F.max_pool2d(ink, kernel_size=side + 2, stride=1, padding=1).flatten(1) > 0
    corners = IMAGE_SIDE - side + 1
    allowed = near_ink if placement == "stroke" else torch.ones_like(near_ink)
    masked = chosen.clone()
    for i in range(count):
        options = allowed[i].nonzero().flatten()
        if len(options) == 0:  # a blank image: anywhere will do
            options = torch.arange(corners * corners)
        corner = int(options[torch.randint(len(options), (1,), generator=generator)])
        row, col = divmod(corner, corners)
        for dr, dc in itertools.product(range(side), repeat=2):
            masked[i, (row + dr) * IMAGE_SIDE + col + dc] = -1
    return InpaintingSet(masked, chosen, labels[index])


def load_set(path: str | Path, max_hidden: int = DEFAULT_MAX_HIDDEN) -> InpaintingSet:
    """Read an in-painting set from ``.npz`` (``images``, optional ``targets``, ``labels``) or
    ``.npy`` (the images), checking shape, values and the number of hidden pixels.

    Raises:
        DataError: a missing or unreadable file, a shape other than ``[N, 784]`` /
            ``[N, 28, 28]``, values outside {-1, 0, 1}, an image with no hidden pixel or with
            more than ``max_hidden``, or targets that disagree with the seen pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"in-painting file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path} is not a readable .npy/.npz file ({err})") from err
    if isinstance(loaded, np.ndarray):
        images, targets, labels = loaded, None, None
    else:
        if "images" not in loaded.files:
            raise DataError(f"{path} has no 'images' array (it has: {', '.join(loaded.files)})")
        images = loaded["images"]
        targets = loaded["targets"] if "targets" in loaded.files else None
        labels = loaded["labels"] if "labels" in loaded.files else None
    images = _as_image_rows(images, path, "images")
    bad = ~np.isin(images, (-1, 0, 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: images[{i}, {j}] = {images[i, j]}; pixels must be 0, 1, or -1 (hidden)"
        )
    counts = (images < 0).sum(axis=1)
    check_hidden_counts(counts, max_hidden, str(path))
    if targets is not None:
        targets = _as_image_rows(targets, path, "targets")
        if targets.shape != images.shape or not np.isin(targets, (0, 1)).all():
            raise DataError(f"{path}: targets must be 0/1 images shaped like images")
        seen = images >= 0
        if (targets[seen] != images[seen]).any():
            raise DataError(f"{path}: targets disagree with images on seen pixels")
    return InpaintingSet(
        torch.from_numpy(images.astype(np.int8)),
        None if targets is None else torch.from_numpy(targets.astype(np.int8)),
        None if labels is None else torch.from_numpy(np.asarray(labels)),
    )


def check_hidden_counts(counts, max_hidden: int, where: str = "the set") -> None:
    """Every image needs 1 to ``max_hidden`` hidden pixels; say which one does not, and why."""
    counts = np.asarray(counts)
    if (counts == 0).any():
        raise DataError(f"{where}: image {int(np.argmax(counts == 0))} has no hidden pixel (-1)")
    if (counts > max_hidden).any():
        i = int(np.argmax(counts > max_hidden))
        raise DataError(
            f"{where}: image {i} has {counts[i]} hidden pixels; the cap is "
            f"max_hidden={max_hidden}, because exact in-painting scores every filling: "
            f"2^{counts[i]} = {2 ** int(counts[i]):,} full sequences for that image"
        )


def _as_image_rows(array: np.ndarray, path: Path, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE):
        array = array.reshape(len(array), -1)
    if array.ndim != 2 or array.shape[1] != IMAGE_SIDE * IMAGE_SIDE:
        raise DataError(
            f"{path}: {name} has shape {list(array.shape)}; expected [N, 784] or [N, 28, 28]"
        )
    return array.astype(np.int64)


@torch.no_grad()
def study_metrics(
    model: NextPixelPredictor,
    dataset: InpaintingSet,
    found: list[Posterior],
    reading: torch.Tensor | None = None,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The study's numbers against the ground truth: ``(means, per-image values)``.

    Cross-entropies are nats per pixel: over the whole image (``*_ce_image``, as the reference
    reports give them) and over the hidden pixels alone (``*_ce_hidden``, from the posterior).
    ``past_*`` fill each hidden pixel from the pixels before it only, as a one-step prediction
    does, to show what knowing the future adds. ``reading``: see :func:`run_inpainting`.
    """
    targets = dataset.targets.long()
    read = targets if reading is None else targets[:, reading]
    pixels = targets.shape[1]
    truth_log_p = torch.cat(
        [model.log_prob(chunk.to(model.device)).double().cpu() for chunk in read.split(256)]
    )
    per_image: dict[str, list[float]] = {
        key: []
        for key in (
            "truth_mass",
            "map_correct",
            "map_pixels_correct",
            "map_minus_truth",
            "past_mass",
            "past_pixels_correct",
            "hidden",
        )
    }
    for posterior, target in zip(found, targets, strict=True):
        truth = target[posterior.positions]
        t, m = posterior.index_of(truth), int(posterior.log_joint.argmax())
        log_post = torch.log_softmax(posterior.log_joint, dim=0)
        past = posterior.past_only_filling()
        per_image["truth_mass"].append(float(log_post[t].exp()))
        per_image["map_correct"].append(float(m == t))
        per_image["map_pixels_correct"].append(float((posterior.map_filling == truth).sum()))
        per_image["map_minus_truth"].append(float(posterior.log_joint[m] - posterior.log_joint[t]))
        per_image["past_mass"].append(float(posterior.past_log_probs[t].double().sum().exp()))
        per_image["past_pixels_correct"].append(float((past == truth).sum()))
        per_image["hidden"].append(len(truth))
    values = {key: torch.tensor(v, dtype=torch.float64) for key, v in per_image.items()}
    hidden_total = values["hidden"].sum()
    truth_mass = values["truth_mass"]
    map_log_p = truth_log_p + values["map_minus_truth"]
    means = {
        "images": len(found),
        "hidden_pixels": int(hidden_total),
        "truth_ce_image": float(-truth_log_p.sum() / (len(found) * pixels)),
        "map_ce_image": float(-map_log_p.sum() / (len(found) * pixels)),
        "truth_ce_hidden": float(-truth_mass.log().sum() / hidden_total),
        "map_ce_hidden": float(
            -(truth_mass.log() + values["map_minus_truth"]).sum() / hidden_total
        ),
        "map_pixel_acc": float(values["map_pixels_correct"].sum() / hidden_total),
        "map_image_acc": float(values["map_correct"].mean()),
        "truth_mass": float(truth_mass.mean()),
        "past_pixel_acc": float(values["past_pixels_correct"].sum() / hidden_total),
        "past_truth_mass": float(values["past_mass"].mean()),
        "past_ce_hidden": float(-values["past_mass"].log().sum() / hidden_total),
    }
    return means, values


def posterior_arrays(found: list[Posterior]) -> dict[str, np.ndarray]:
    """Per image, padded to the largest k: positions, candidate probabilities, MAP, marginals
    and the past-only filling (-1 / NaN / 0 where an image has fewer hidden pixels)."""
    k_max = max(len(p.positions) for p in found)
    n = len(found)
    arrays = {
        "hidden_counts": np.array([len(p.positions) for p in found]),
        "positions": np.full((n, k_max), -1),
        "fillings_probs": np.zeros((n, 2**k_max)),
        "map": np.full((n, k_max), -1),
        "marginals": np.full((n, k_max), np.nan),
        "past_only": np.full((n, k_max), -1),
    }
    for i, p in enumerate(found):
        k = len(p.positions)
        arrays["positions"][i, :k] = p.positions.numpy()
        arrays["fillings_probs"][i, : 2**k] = p.probs.numpy()
        arrays["map"][i, :k] = p.map_filling.numpy()
        arrays["marginals"][i, :k] = p.marginals.numpy()
        arrays["past_only"][i, :k] = p.past_only_filling().numpy()
    return arrays


def example_figure(
    dataset: InpaintingSet, found: list[Posterior], picks: list[int], title: str
) -> Figure:
    """Rows of picked images: the whole image, then a zoom on the hidden pixels (framed in red):
    ground truth, masked, MAP filling, and the posterior p(x = 1) as a grey level."""
    rows, outlines, names = [], [], []
    for i in picks:
        p = found[i]
        masked = dataset.images[i]
        filled = masked.long().clamp(min=0)
        filled[p.positions] = p.map_filling
        half = torch.full((len(p.positions),), 0.5)
        whole = dataset.targets[i] if dataset.targets is not None else filled
        panels = [
            render_posterior(masked, half, p.positions),
            render(filled, IMAGE_SIDE * IMAGE_SIDE),
            render_posterior(masked, p.marginals, p.positions),
        ]
        if dataset.targets is not None:
            panels.insert(0, render(dataset.targets[i], IMAGE_SIDE * IMAGE_SIDE))
        zooms = [crop_around(panel, p.positions) for panel in panels]
        rows.append([render(whole, IMAGE_SIDE * IMAGE_SIDE)] + [window for window, _ in zooms])
        outlines.append([[]] + [frame for _, frame in zooms])
        names.append(f"#{i}")
    columns = ["masked", "MAP", "posterior"]
    if dataset.targets is not None:
        columns.insert(0, "truth")
    columns = ["image", *(f"{c} (zoom)" for c in columns)]
    return image_grid(rows, names, columns, title=title, outlines=outlines)


def future_gain_figure(means: dict[str, float]) -> Figure:
    """Bars: accuracy and mass on the truth, from the past alone vs the exact posterior."""
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    labels = ["pixel accuracy", "mass on the truth"]
    past = [means["past_pixel_acc"], means["past_truth_mass"]]
    exact = [means["map_pixel_acc"], means["truth_mass"]]
    x = np.arange(len(labels))
    ax.bar(x - 0.18, past, 0.36, label="past only (one-step prediction)", color="#999999")
    ax.bar(x + 0.18, exact, 0.36, label="exact posterior (past and future)", color="#e69500")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("What the future adds", fontsize=10)
    return fig


def run_inpainting(
    model: NextPixelPredictor,
    dataset: InpaintingSet,
    out_dir: str | Path,
    dataset_name: str = "",
    shown: int = 4,
    max_sequences: int = 512,
    checkpoint: str | None = None,
    reading: torch.Tensor | None = None,
) -> dict:
    """Posteriors for every image, then ``inpaint.json``, ``posterior.npz``, ``dataset.npz``,
    figures and TensorBoard logs in ``out_dir``; returns the content of ``inpaint.json``.

    ``reading``: ``[784]`` the image pixel the model reads at each step, for a model trained in
    permuted order (its data's permutation); None: in pixel order. The dataset, the figures and
    the posteriors' ``positions`` stay in image places; the model reads each image (and scores
    each filling) in its own order, so "the past" of a hidden pixel is what the model read
    before it."""
    out_dir = Path(out_dir)
    (out_dir / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if reading is None:
        found = posteriors(model, dataset.images, max_sequences)
    else:
        found = posteriors(model, dataset.images[:, reading], max_sequences)
        for posterior in found:  # reading steps back to image places, in the model's order
            posterior.positions = reading[posterior.positions]
    seconds = time.perf_counter() - started
    report: dict = {
        "checkpoint": checkpoint,
        "dataset": dataset_name,
        "images": len(found),
        "hidden_per_image": sorted(set(dataset.hidden_counts.tolist())),
        "posterior_seconds": round(seconds, 2),
    }
    figures = {}
    if dataset.targets is not None:
        means, values = study_metrics(model, dataset, found, reading)
        report["metrics"] = means
        order = values["truth_mass"].argsort()
        picks = {"successes": order[-shown:].flip(0).tolist(), "failures": order[:shown].tolist()}
        report["examples"] = picks
        figures["successes"] = example_figure(
            dataset, found, picks["successes"], "most posterior mass on the truth"
        )
        figures["failures"] = example_figure(
            dataset, found, picks["failures"], "least posterior mass on the truth"
        )
        figures["future_gain"] = future_gain_figure(means)
    else:
        figures["examples"] = example_figure(dataset, found, list(range(shown)), "first images")
    dataset.save(out_dir / "dataset.npz")
    np.savez_compressed(out_dir / POSTERIOR_FILE, **posterior_arrays(found))
    report["figures"] = save_figures(out_dir, figures, "inpainting")
    write_json_atomic(out_dir / INPAINT_FILE, report)
    return report
