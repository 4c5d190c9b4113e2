"""What trained models do over time.

- Classifiers: the states of every layer over the steps of one test image (heat maps), and,
  over the whole test set, the accuracy and mean confidence (max softmax) of the trained head fed
  the top layer's output at each step: when does the model know the digit?
- Symbol predictors (``task=dirichlet``): the network's predictive distribution next to the
  Bayesian posterior predictive, step by step, with their KL and cross-entropies, on the test
  set and on sequences with a fixed p.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from seqrnn.data.dirichlet import bayes_metrics, bayes_predictive, generate
from seqrnn.errors import ConfigError
from seqrnn.files import write_json_atomic
from seqrnn.layout import ANALYSIS_FILE, IMAGE_SIDE
from seqrnn.models import SequenceClassifier, SymbolPredictor
from seqrnn.nn import reference_forward
from seqrnn.studies.figures import save_figures


@torch.no_grad()
def readout_over_time(
    model: SequenceClassifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and mean max-softmax ``[T]`` of the head applied to the top layer's output at
    each step, over ``images`` ``[N, T, F]``."""
    model.eval()
    correct, confidence = 0, 0
    for x, y in zip(images.split(batch), labels.split(batch), strict=True):
        out, _ = model.encode(x.float().to(model.device))
        probs = torch.softmax(model.head(out.flatten(0, 1)), dim=-1).view(*out.shape[:2], -1)
        top, guess = probs.max(dim=-1)
        correct = correct + (guess == y.to(model.device)[:, None]).sum(0).double().cpu()
        confidence = confidence + top.sum(0).double().cpu()
    return correct / len(images), confidence / len(images)


@torch.no_grad()
def layer_states(model: SequenceClassifier, image: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Per layer, the states ``h`` (and ``c`` for an LSTM) ``[T, H]`` over one image ``[T, F]``,
    from the reference cells (the fused kernels return only the top layer)."""
    model.eval()
    # the reference cells are not the stack's entry: they trace every layer, which none of its
    # backends return, so the input map is applied here
    inputs = model.input_proj(image.float().to(model.device)[None])
    _, _, trace = reference_forward(model.stack, inputs)
    return [{k: v[0].cpu() for k, v in layer.items() if k in ("h", "c")} for layer in trace]


def heatmap(values: torch.Tensor, title: str, steps_per_row: int | None = None) -> Figure:
    """A units x time heat map of ``values`` ``[T, H]``."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(
        values.T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest"
    )
    ax.set_xlabel("step" + (f" (image rows every {steps_per_row})" if steps_per_row else ""))
    ax.set_ylabel("unit")
    if steps_per_row:
        ax.set_xticks(range(0, values.shape[0] + 1, steps_per_row * 4))
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03)
    return fig


def readout_figure(accuracy: torch.Tensor, confidence: torch.Tensor, title: str) -> Figure:
    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    steps = np.arange(1, len(accuracy) + 1)
    ax.plot(steps, accuracy.numpy(), label="accuracy of the head at step t")
    ax.plot(steps, confidence.numpy(), label="mean max-softmax confidence")
    ax.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("step t")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def analyze_classifier(
    model: SequenceClassifier,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    out_dir: str | Path,
    image: int = 0,
    checkpoint: str | None = None,
    order: str = "pixel",
) -> dict[str, Any]:
    """States of one image and the read-out over time on the whole test set (``test_images``
    ``[N, T, F]``, read in the model's ``order``); writes ``analysis.json``, ``figures/*.png``
    and TensorBoard logs into ``out_dir``."""
    if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < len(test_images):
        raise ConfigError(
            f"image={image!r} is not allowed; it must be an integer in 0..{len(test_images) - 1} "
            f"(one of the {len(test_images)} test images read)"
        )
    started = time.perf_counter()
    accuracy, confidence = readout_over_time(model, test_images, test_labels)
    final = float(accuracy[-1])
    knows = int(torch.nonzero(accuracy >= 0.95 * final)[0]) + 1 if final > 0 else None
    # pixel order: the heatmaps mark where each image row starts (other orders have no rows)
    per_row = IMAGE_SIDE if order == "pixel" else None
    x = test_images[image]
    with torch.no_grad():
        probs = torch.softmax(model(x.float()[None].to(model.device)), dim=-1)[0].cpu()
    figures = {
        "readout": readout_figure(
            accuracy, confidence, f"Reading the state at each step: {len(test_images)} test images"
        )
    }
    for number, layer in enumerate(layer_states(model, x), start=1):
        for name, values in layer.items():
            figures[f"layer{number}_{name}"] = heatmap(
                values,
                f"layer {number} {name} over test image {image} (label "
                f"{int(test_labels[image])}, predicted {int(probs.argmax())})",
                per_row,
            )
    report = {
        "checkpoint": checkpoint,
        "test_images": len(test_images),
        "image": image,
        "label": int(test_labels[image]),
        "prediction": int(probs.argmax()),
        "confidence": float(probs.max()),
        "final_accuracy": final,
        "knows_at_step": knows,
        "accuracy_by_step": [round(float(a), 5) for a in accuracy],
        "confidence_by_step": [round(float(c), 5) for c in confidence],
        "seconds": round(time.perf_counter() - started, 1),
    }
    return _write(out_dir, report, figures)


def analyze_symbols(
    model: SymbolPredictor,
    test_symbols: torch.Tensor,
    out_dir: str | Path,
    fixed_p: list[float] | None = None,
    shown: int = 3,
    seed: int = 0,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """The network against the Bayesian posterior predictive on the test sequences and on
    sequences whose p is fixed; figures of both predictives through time for ``shown``
    sequences."""
    alpha, period = model.hparams.alpha, model.hparams.period
    if fixed_p is None:
        fixed_p = (torch.tensor(alpha) / sum(alpha)).tolist()
    fixed = generate(
        len(test_symbols),
        alpha,
        period,
        test_symbols.shape[1] // (period + 1),
        seed=seed + 99,
        fixed_p=fixed_p,
    )
    table = {
        "test": compare_with_bayes(model, test_symbols),
        "fixed_p": compare_with_bayes(model, fixed),
    }
    figures = {
        f"predictive_{i}": predictive_figure(model, test_symbols[i], i)
        for i in range(min(shown, len(test_symbols)))
    }
    report = {
        "checkpoint": checkpoint,
        "alpha": list(alpha),
        "period": period,
        "fixed_p": fixed_p,
        "table": table,
    }
    return _write(out_dir, report, figures)


@torch.no_grad()
def compare_with_bayes(model: SymbolPredictor, symbols: torch.Tensor, batch: int = 1000):
    """Mean KL(Bayes || network) per symbol, and both cross-entropies (nats per symbol)."""
    model.eval()
    totals = {"kl": 0.0, "network_ce": 0.0, "bayes_ce": 0.0}
    for chunk in symbols.split(batch):
        chunk = chunk.reshape(len(chunk), -1).long()
        log_q = F.log_softmax(model(chunk.to(model.device)), dim=-1).double().cpu()
        p = bayes_predictive(chunk, model.hparams.alpha, model.hparams.period)
        kl, bayes_ce = bayes_metrics(p, log_q, chunk)
        totals["kl"] += float(kl.sum())
        totals["network_ce"] += float(-log_q.gather(-1, chunk.unsqueeze(-1)).sum())
        totals["bayes_ce"] += float(bayes_ce.sum())
    count = symbols.numel()
    return {key: value / count for key, value in totals.items()}


@torch.no_grad()
def predictive_figure(
    model: SymbolPredictor, symbols: torch.Tensor, number: int, segments: int = 5
) -> Figure:
    """Each symbol's probability through the first ``segments`` segments of one sequence:
    network (solid) and Bayes (dashed); grey lines mark the resets."""
    period = model.hparams.period
    symbols = symbols.reshape(1, -1).long()[:, : segments * (period + 1)]
    q = torch.softmax(model(symbols.to(model.device)), dim=-1)[0].cpu()
    p = bayes_predictive(symbols, model.hparams.alpha, period)[0]
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    steps = np.arange(len(q))
    for reset in steps[period :: period + 1]:
        ax.axvline(reset, color="grey", lw=0.6, alpha=0.5)
    for k in range(q.shape[1] - 1):  # the reset's own curve is a comb: the grey lines say it
        (line,) = ax.plot(steps, q[:, k].numpy(), lw=1.4, marker=".", label=f"symbol {k}: network")
        ax.plot(steps, p[:, k].numpy(), ls="--", lw=1.0, color=line.get_color(), label="Bayes")
    ax.set_xlabel(
        "position (grey: reset, predicted by the network with mean p = "
        f"{float(q[period :: period + 1, -1].mean()):.3f})"
    )
    ax.set_ylabel("p(next symbol)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    ax.set_title(
        f"test sequence {number}, first {segments} segments: network (solid) vs posterior "
        "predictive (dashed)",
        fontsize=10,
    )
    return fig


def _write(out_dir: str | Path, report: dict[str, Any], figures: dict[str, Figure]) -> dict:
    out_dir = Path(out_dir)
    report["figures"] = save_figures(out_dir, figures, "analysis")
    write_json_atomic(out_dir / ANALYSIS_FILE, report)
    return report
