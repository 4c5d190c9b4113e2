"""Training throughput: the full Lightning training step against the bare computation under it.

For every cell and size, on the same random binary batches ``[B, 784, 1]``, sequences per second of

- ``stack``: the recurrent stack alone on the path the model uses (``model.encode``: the pixel
  through the input affine, folded into the fused kernels), forward + backward of the last
  output;
- ``plain``: the whole classifier in a plain PyTorch loop over the loader (fetch, forward,
  cross-entropy, backward, gradient clipping, Adam step): what a training step must compute;
- ``lightning``: ``Trainer.fit`` on the same model and loader (no logger, no checkpoints, no
  progress bar), timed from one batch's end to the next, so data fetching, logging and the loop's
  own bookkeeping count.

The three are measured in interleaved rounds (stack, plain, lightning, stack, plain, ...), so a
change in the machine's speed during the run touches all three alike; each figure is the median
batch time over all rounds (after ``warmup`` batches a round), and ``lightning / plain`` is
also given per round: its median and its spread (min, max) say whether a difference is real.
``plain / stack`` is what the rest of the model and the optimizer cost on top of the recurrence.

Each row comes in every precision of ``precisions`` (``32-true``; ``bf16-mixed``: the forward
under bfloat16 autocast, as ``trainer.precision=bf16-mixed`` trains), interleaved with the
others in the same rounds; ``vs_float32`` is a bf16 row's Lightning speed over the float32 row's.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from seqrnn.bench.common import device, sync
from seqrnn.data import SequenceBatches
from seqrnn.models import SequenceClassifier

SIZES = ("1x32", "1x64", "1x128", "3x32")
QUICK = {"batches": 2, "sizes": ("1x32", "3x32"), "rounds": 2}


def parse_size(size: str) -> tuple[int, int]:
    """``"3x32"`` -> (layers 3, units 32)."""
    layers, units = size.split("x")
    return int(layers), int(units)


def make_batches(n: int, batch_size: int, steps: int = 784, seed: int = 0) -> SequenceBatches:
    """``n`` batches of random binary sequences, served as the DataModule serves MNIST."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 2, (n * batch_size, steps, 1), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n * batch_size,), generator=gen)
    return SequenceBatches(images, labels, batch_size)


def _batch_seconds(step, batches, dev: torch.device) -> list[float]:
    """Wall time of ``step(batch)`` for each batch, GPU work included."""
    times = []
    for batch in batches:
        sync(dev)
        start = time.perf_counter()
        step(batch)
        sync(dev)
        times.append(time.perf_counter() - start)
    return times


def autocast(dev: torch.device, precision: str):
    """The autocast region a forward runs in at ``precision`` (off at 32-true)."""
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def stack_seconds(
    model: SequenceClassifier, loader: SequenceBatches, precision: str
) -> list[float]:
    dev = model.device
    inputs = [x.to(dev) for x, _ in loader]

    def step(x):
        with autocast(dev, precision):
            _, state = model.encode(x.float())
            loss = model.stack.top_output(state).float().sum()
        loss.backward()

    return _batch_seconds(step, inputs, dev)


def plain_seconds(
    model: SequenceClassifier, loader: SequenceBatches, precision: str
) -> list[float]:
    dev = model.device
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, iterator = [], iter(loader)
    for _ in range(len(loader)):
        sync(dev)
        start = time.perf_counter()
        x, y = next(iterator)
        optimizer.zero_grad(set_to_none=True)
        with autocast(dev, precision):
            loss = F.cross_entropy(model(x.to(dev)), y.to(dev))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sync(dev)
        times.append(time.perf_counter() - start)
    return times


class _BatchClock(L.Callback):
    """Time between consecutive batch ends: one whole iteration of Lightning's loop."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        sync(module.device)
        self.ends.append(time.perf_counter())


def lightning_seconds(
    model: SequenceClassifier, loader: SequenceBatches, precision: str
) -> list[float]:
    clock = _BatchClock()
    trainer = timing_trainer(
        accelerator="auto", devices=1, precision=precision, gradient_clip_val=1.0, callbacks=[clock]
    )
    with warnings.catch_warnings():
        # The classifier has a validation_step; this run has no validation data, on purpose.
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        trainer.fit(model, train_dataloaders=loader)
    return [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)]


MEASURES = {"stack": stack_seconds, "plain": plain_seconds, "lightning": lightning_seconds}
PRECISIONS = ("32-true", "bf16-mixed")


def timing_trainer(**kwargs: Any) -> L.Trainer:
    """A Trainer that only trains, one epoch: no validation, logger, checkpoints, bar or model
    summary (``kwargs`` add to it), so that a clock callback times the training steps alone."""
    settings = {
        "max_epochs": 1,
        "limit_val_batches": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**settings, **kwargs})


def run(
    cells=("gru", "lstm"),
    sizes=SIZES,
    batch_size: int = 256,
    batches: int = 3,
    warmup: int = 1,
    rounds: int = 3,
    precisions=PRECISIONS,
) -> dict[str, Any]:
    """Measure every cell x size; returns ``{"rows": [...], ...}`` for the JSON report."""
    dev = device()
    loader = make_batches(warmup + batches + 1, batch_size)  # +1: lightning's first interval
    rows = []
    for cell in cells:
        for size in sizes:
            layers, units = parse_size(size)
            cases = [(name, precision) for precision in precisions for name in MEASURES]
            models = {}
            for case in cases:
                torch.manual_seed(0)
                models[case] = SequenceClassifier(
                    cell=cell, units=units, layers=layers, head_batchnorm=True
                ).to(dev)
            seconds: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
            ratios: dict[str, list[float]] = {precision: [] for precision in precisions}
            for _ in range(rounds):
                medians = {}
                for case in cases:
                    name, precision = case
                    times = MEASURES[name](models[case], loader, precision)[warmup:]
                    seconds[case] += times
                    medians[case] = statistics.median(times)
                for precision in precisions:
                    plain, lightning = medians["plain", precision], medians["lightning", precision]
                    ratios[precision].append(plain / lightning)
            for precision in precisions:
                row: dict[str, Any] = {"cell": cell, "size": size, "precision": precision}
                for name in MEASURES:
                    median = statistics.median(seconds[name, precision])
                    row[f"{name}_seq_s"] = round(batch_size / median, 1)
                row["lightning_vs_plain"] = round(statistics.median(ratios[precision]), 3)
                row["lightning_vs_plain_min"] = round(min(ratios[precision]), 3)
                row["lightning_vs_plain_max"] = round(max(ratios[precision]), 3)
                row["plain_vs_stack"] = round(row["plain_seq_s"] / row["stack_seq_s"], 3)
                if precision != "32-true" and "32-true" in precisions:
                    # the float32 row of this cell and size, appended just before
                    base = rows[precisions.index("32-true") - precisions.index(precision)]
                    row["vs_float32"] = round(row["lightning_seq_s"] / base["lightning_seq_s"], 2)
                rows.append(row)
                print(
                    f"{cell} {size} {precision}: stack {row['stack_seq_s']}, plain "
                    f"{row['plain_seq_s']}, lightning {row['lightning_seq_s']} sequences/s; "
                    f"lightning/plain {row['lightning_vs_plain']} "
                    f"({row['lightning_vs_plain_min']}-{row['lightning_vs_plain_max']})",
                    flush=True,
                )
    return {
        "batch_size": batch_size,
        "batches": batches,
        "warmup": warmup,
        "rounds": rounds,
        "steps": 784,
        "statistic": "median batch time over interleaved rounds; ratio: median, min, max",
        "rows": rows,
    }
