"""Training beside other work: how much a run slows when it shares its cores (CPU only).

The GRU-128 classifier's Lightning training step (batch 128, random binary images, as in
:mod:`seqrnn.bench.train_throughput`), sequences per second, at the default threads, in three
places:

- ``alone``: the machine otherwise idle;
- ``busy loop``: beside one process that spins on one core (a browser tab, a build);
- ``two runs``: two such runs started together (each one's figure is reported).

Each with the threads following the free cores (:class:`seqrnn.callbacks.ShareCores`, the
default) and fixed at torch's default (``following: false``, as before it). ``slowdown`` is
a row's time per batch over the same setting's ``alone``. Every run is a fresh process.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import subprocess
import sys
from typing import Any

import torch

QUICK = {"size": "1x8", "batch": 4, "batches": 3, "warmup": 1}
BUSY_LOOP = "while True: pass"


def _run_seq_s(follow: bool, size: str, batch: int, batches: int, warmup: int, barrier, results):
    """One training run's sequences per second (median batch after ``warmup``), put on
    ``results`` once every run of the measurement passed ``barrier``."""
    import warnings

    from seqrnn.bench.train_throughput import _BatchClock, make_batches, parse_size, timing_trainer
    from seqrnn.callbacks import ShareCores
    from seqrnn.models import SequenceClassifier

    layers, units = parse_size(size)
    torch.manual_seed(0)
    model = SequenceClassifier(cell="gru", units=units, layers=layers, head_batchnorm=True)
    loader = make_batches(warmup + batches + 1, batch)
    # every 1 s rather than 3: the measurement is short; the decision is the same
    share = ShareCores(threads=None if follow else torch.get_num_threads(), every_seconds=1.0)
    clock = _BatchClock()
    trainer = timing_trainer(accelerator="cpu", callbacks=[share, clock])
    model(next(iter(loader))[0])  # builds the fused kernels before the clock starts
    barrier.wait()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        trainer.fit(model, train_dataloaders=loader)
    seconds = [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)][warmup:]
    results.put(batch / statistics.median(seconds))


def _measure(runs: int, busy: bool, follow: bool, **settings) -> list[float]:
    """Sequences per second of each of ``runs`` runs started together (beside a busy loop)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(runs), ctx.Queue()
    args = (follow, settings["size"], settings["batch"], settings["batches"], settings["warmup"])
    workers = [ctx.Process(target=_run_seq_s, args=(*args, barrier, results)) for _ in range(runs)]
    spinner = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if busy else None
    try:
        for worker in workers:
            worker.start()
        found = []
        for _ in workers:
            try:
                found.append(results.get(timeout=1800))
            except queue.Empty:
                raise RuntimeError("a benchmark run ended without a result") from None
        for worker in workers:
            worker.join()
        return found
    finally:
        if spinner is not None:
            spinner.kill()
        for worker in workers:
            if worker.is_alive():
                worker.kill()


def run(size: str = "1x128", batch: int = 128, batches: int = 8, warmup: int = 4) -> dict:
    """Every place x both thread settings; returns ``{"rows": [...], ...}``."""
    from seqrnn.bench.common import device

    if device().type != "cpu":
        print("neighbours: a CPU question; nothing measured on a machine with a GPU", flush=True)
        return {"size": size, "batch": batch, "rows": []}
    settings = {"size": size, "batch": batch, "batches": batches, "warmup": warmup}
    rows: list[dict[str, Any]] = []
    for follow in (True, False):
        alone = None
        for place, runs, busy in (
            ("alone", 1, False),
            ("busy loop", 1, True),
            ("two runs", 2, False),
        ):
            for seq_s in _measure(runs, busy, follow, **settings):
                alone = alone or seq_s
                row = {
                    "place": place,
                    "following": follow,
                    "seq_s": round(seq_s, 1),
                    "slowdown": round(alone / seq_s, 2),
                }
                rows.append(row)
                print(
                    f"GRU {size}, {place}, threads {'following' if follow else 'fixed'}: "
                    f"{row['seq_s']} seq/s, {row['slowdown']}x the time of one alone",
                    flush=True,
                )
    return {**settings, "cell": "gru", "rows": rows}
