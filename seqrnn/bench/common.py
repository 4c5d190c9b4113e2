"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from seqrnn.files import write_json_atomic
from seqrnn.training.checkpoints import resolve_device


def device() -> torch.device:
    """Where the benchmarks run: the GPU when there is one (as ``device=auto`` everywhere)."""
    return torch.device(resolve_device("auto"))


def sync(dev: torch.device) -> None:
    """Wait for queued GPU work, so a wall clock measures it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device) -> float:
    """Seconds ``fn()`` takes, GPU work included."""
    sync(dev)
    start = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - start


def machine() -> dict[str, Any]:
    dev = device()
    return {
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def write_bench_json(path: str | Path, report: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, report)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows as an aligned text table (numbers with 3 significant digits)."""

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
