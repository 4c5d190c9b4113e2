"""A self-check of a device against the CPU, in about a minute: ``make gpu-check``.

Each check prints one line, ``ok`` or ``FAIL``, with the number it was judged by:

- ``stack``: GRU and LSTM stacks (1 and 2 layers) on the device (cuDNN on a GPU, seqrnn's fused
  kernels on a CPU): the outputs of a 784-step pass and the gradients of the last output, against
  the step-by-step reference cells (:mod:`seqrnn.nn.reference`) on the CPU in float64;
- ``completion``: pixels sampled on the device by ``continue_sequences`` (the completion study's
  sampler), scored again on the CPU: the probabilities they were drawn with must match;
- ``inpainting``: exact posteriors over hidden pixels (the in-painting study's) on the device
  against brute force on the CPU;
- ``run``: one tiny training run per task on the device through ``experiments.train``, and one
  classifier in mixed precision: each ends ``completed`` with finite losses.

TF32 stays off (seqrnn's default, ``tf32=false``), so float32 on the device must agree with the
CPU to float32's precision. ``--device cpu`` runs the same checks on the CPU alone (the fused
kernels against the reference); CI does that.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrnn.data import MNIST_FILES, write_idx
from seqrnn.layout import RESULTS_FILE, entry_command
from seqrnn.models import TASKS, NextPixelPredictor
from seqrnn.models.inpainting import brute_force_log_joint, posteriors
from seqrnn.nn import RecurrentStack
from seqrnn.nn.reference import reference_forward

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STEPS = 784
# float32 on the device against float64 on the CPU over 784 steps
OUTPUT_TOLERANCE = 1e-4
GRADIENT_TOLERANCE = 1e-3  # relative to the largest gradient entry
PROBABILITY_TOLERANCE = 1e-4


def stack_checks(device: torch.device) -> Iterator[tuple[str, float, float]]:
    """``(name, largest difference, tolerance)`` for each stack compared with the reference."""
    for cell in ("gru", "lstm"):
        for layers in (1, 2):
            torch.manual_seed(layers)
            stack = RecurrentStack(cell, input_size=1, units=32, layers=layers)
            x = torch.randint(0, 2, (8, STEPS, 1)).float()
            reference = stack.double()
            ref_out, _, _ = reference_forward(reference, x.double())
            ref_out[:, -1].sum().backward()
            ref_grads = [p.grad.clone() for p in reference.parameters()]
            tested = stack.float().to(device)
            tested.zero_grad()
            out, _ = tested(x.to(device))
            out[:, -1].sum().backward()
            out_diff = (out.double().cpu() - ref_out.detach()).abs().max().item()
            scale = max(g.abs().max().item() for g in ref_grads)
            grad_diff = max(
                (p.grad.double().cpu() - g).abs().max().item() / scale
                for p, g in zip(tested.parameters(), ref_grads, strict=True)
            )
            size = f"{layers}x32"
            yield f"stack {cell} {size}: outputs", out_diff, OUTPUT_TOLERANCE
            yield f"stack {cell} {size}: gradients (relative)", grad_diff, GRADIENT_TOLERANCE


def predictor_pair(
    cell: str, device: torch.device
) -> tuple[NextPixelPredictor, NextPixelPredictor]:
    """One predictor's weights on the CPU and on ``device``, both in evaluation mode."""
    torch.manual_seed(0)
    cpu = NextPixelPredictor(cell=cell, units=32, layers=2).eval()
    moved = NextPixelPredictor(cell=cell, units=32, layers=2).eval()
    moved.load_state_dict(cpu.state_dict())
    return cpu, moved.to(device)


def completion_checks(device: torch.device) -> Iterator[tuple[str, float, float]]:
    """Sampled on the device, scored on the CPU: the largest difference of the probabilities."""
    for cell in ("gru", "lstm"):
        cpu, moved = predictor_pair(cell, device)
        prefix = torch.randint(0, 2, (4, 300), generator=torch.Generator().manual_seed(1))
        generator = torch.Generator(device=device).manual_seed(2)
        sampled = moved.continue_sequences(prefix, 100, generator=generator, repeats=3)
        images = torch.cat([prefix.repeat_interleave(3, 0), sampled.pixels.cpu()], dim=1)
        with torch.no_grad():
            scored = torch.sigmoid(cpu(images))[:, 300:400]
        diff = (scored - sampled.probs.cpu()).abs().max().item()
        yield f"completion {cell}: probabilities of the sampled pixels", diff, PROBABILITY_TOLERANCE


def inpainting_checks(device: torch.device) -> Iterator[tuple[str, float, float]]:
    """Exact posteriors of hidden pixels on the device (the study's branch-sharing passes)
    against brute force on the CPU (every filling scored by a full pass, summed in float64)."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 2, (3, STEPS), generator=generator)
    for i, spot in enumerate(([100, 101, 128, 129], [0, 400, 783], [350])):
        images[i, spot] = -1
    for cell in ("gru", "lstm"):
        cpu, moved = predictor_pair(cell, device)
        with torch.no_grad():
            found = posteriors(moved, images)
        diff = max(
            (torch.softmax(brute_force_log_joint(cpu, image)[1], 0) - got.probs.cpu())
            .abs()
            .max()
            .item()
            for image, got in zip(images, found, strict=True)
        )
        yield f"inpainting {cell}: posterior probabilities", diff, PROBABILITY_TOLERANCE


def tiny_mnist(folder: Path) -> Path:
    """Random images in MNIST's four files (100 train, 40 test): enough for a run's plumbing."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for part, name in MNIST_FILES.items():
        split, kind = part.split("_")
        n = 100 if split == "train" else 40
        shape = (n, 28, 28) if kind == "images" else (n,)
        high = 256 if kind == "images" else 10
        write_idx(folder / name, rng.integers(0, high, size=shape, dtype=np.uint8))
    return folder


# A tiny run's data settings, by the data family a task reads (seqrnn.models: data_family).
FAMILY_RUN = {
    "mnist": ["data.root={data}", "data.verify=false", "data.val_size=20"],
    "dirichlet": ["data.train_size=64", "data.val_size=32", "data.test_size=32"],
}
# One run per registered task (seqrnn.models.TASKS).
RUNS = {
    task: [f"task={task}", *FAMILY_RUN[model.data_family]]
    for task, model in TASKS.items()
    if model.data_family in FAMILY_RUN
}
SHORT_RUN = [
    "size=1x32",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "~logger",
]


def run_checks(device: torch.device) -> Iterator[tuple[str, bool, str]]:
    """One tiny ``experiments.train`` run per task (and one in mixed precision) on ``device``:
    ``(name, passed, what it ended with)``."""
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    mixed = "16-mixed" if device.type == "cuda" else "bf16-mixed"
    runs = {
        **RUNS,
        f"classify, precision {mixed}": [*RUNS["classify"], f"trainer.precision={mixed}"],
    }
    with tempfile.TemporaryDirectory() as scratch:
        data = tiny_mnist(Path(scratch) / "mnist")
        for i, (name, overrides) in enumerate(runs.items()):
            run_dir = Path(scratch) / f"run{i}"
            command = [sys.executable, "-m", *entry_command("train")]
            command += [o.format(data=data) for o in overrides] + SHORT_RUN
            command += [f"trainer.accelerator={accelerator}", f"hydra.run.dir={run_dir}"]
            env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
            done = subprocess.run(
                command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
            )
            yield f"run {name}", *_run_outcome(done, run_dir / RESULTS_FILE)


def _run_outcome(done: subprocess.CompletedProcess, results_file: Path) -> tuple[bool, str]:
    if done.returncode != 0 or not results_file.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return False, f"exit {done.returncode}: {last}"
    results = json.loads(results_file.read_text())
    losses = {k: v for k, v in results.items() if k.endswith("_loss")}
    finite = all(math.isfinite(v) for v in losses.values())
    ok = results["status"] == "completed" and finite and bool(losses)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
    return ok, f"{results['status']}, {shown}"


def run(device: str = "cuda", runs: bool = True) -> list[dict[str, Any]]:
    """Every check on ``device``, printed as it finishes; returns the rows (name, ok, detail)."""
    dev = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []

    def report(name: str, ok: bool, detail: str) -> None:
        rows.append({"check": name, "ok": ok, "detail": detail})
        print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    for checks in (stack_checks, completion_checks, inpainting_checks):
        for name, diff, tolerance in checks(dev):
            ok = math.isfinite(diff) and diff <= tolerance
            report(name, ok, f"largest difference {diff:.1e} (allowed {tolerance:.0e})")
    if runs:
        for name, ok, detail in run_checks(dev):
            report(name, ok, detail)
    return rows
