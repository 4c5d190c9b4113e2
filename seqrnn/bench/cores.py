"""How to spend two CPU cores, and what bfloat16 recurrent weights would buy (CPU only).

- ``split``: sequences per second of the recurrent stack's forward + backward (the classifier's
  use, as in :mod:`seqrnn.bench.stack_backends`, on the backend a CPU run uses) for a cell and
  size at a batch size: one process on both cores (2 threads) against two processes of one
  thread each, started together (their sum). The study trains two one-core runs side by side;
  this says whether one run at a time on both cores would finish the grid sooner. The two ways
  alternate, ``rounds`` times, each in fresh processes; the medians are reported.
- ``gemm``: the step's recurrent GEMM ``[B, H] x [H, G H]`` (G = 3 gates for a GRU), one
  thread, in float32 and in bfloat16 (which this machine's AVX-512-BF16 could run natively),
  taking turns: GFLOP/s, and each product's relative error against float64 (the accuracy bf16
  weights cost in one step, before 784 steps compound it); then the same for a square
  ``[1024, 1024] x [1024, 1024]`` GEMM, whose bfloat16 / float32 ratio is the most bfloat16
  can buy any product on this CPU.
- ``precision``: what 784 steps compound it to. A shipped classifier (``ckpt``) on the first
  ``images`` test images, its recurrent products ``h W_hh^T`` computed as a bfloat16 GEMM with
  float32 accumulation would (both factors rounded to bfloat16; state, gates and input
  projection stay float32), against the same steps in float32: test accuracy, and how many
  answers change. Evaluation only; what training in bfloat16 would cost is not measured.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import time
from typing import Any

import torch

from seqrnn.bench.stack_backends import STEPS

QUICK = {"size": "1x8", "batch": 4, "rounds": 1, "repeats": 1, "gemm_repeats": 3, "images": 0}
PEAK_SIZE = 1024  # the square GEMM whose rate stands for the machine's top one


def _stack_seq_s(cell: str, size: str, batch: int, repeats: int, threads: int, barrier, results):
    """One process's sequences per second (median of ``repeats`` batches), put on ``results``
    after every process of the measurement passed ``barrier`` (they time together)."""
    from torch import nn

    from seqrnn.bench.stack_backends import seconds_per_batch
    from seqrnn.bench.train_throughput import parse_size
    from seqrnn.nn import RecurrentStack

    torch.set_num_threads(threads)
    layers, units = parse_size(size)
    torch.manual_seed(0)
    stack = RecurrentStack(cell, units, units, layers)  # backend auto: fused on a CPU
    proj = nn.Linear(1, units)
    seconds_per_batch([(stack, None, "32-true")], proj, batch, 1)  # builds the kernel and warms up
    barrier.wait()
    (seconds,) = seconds_per_batch([(stack, None, "32-true")], proj, batch, repeats)
    results.put(batch / seconds)


def _measure(processes: int, threads: int, cell: str, size: str, batch: int, repeats: int):
    """Total sequences per second of ``processes`` processes of ``threads`` threads each."""
    ctx = mp.get_context("spawn")  # fresh processes: no thread pool or fork state inherited
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    args = (cell, size, batch, repeats, threads, barrier, results)
    workers = [ctx.Process(target=_stack_seq_s, args=args) for _ in range(processes)]
    for worker in workers:
        worker.start()
    measured: list[float] = []
    try:
        while len(measured) < processes:
            try:
                measured.append(results.get(timeout=1.0))
            except queue.Empty:  # a process that died would leave the others at the barrier
                failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if failed:
                    message = f"a benchmark process ended with exit code {failed[0]}"
                    raise RuntimeError(message) from None
    finally:
        for worker in workers:
            if worker.exitcode is None and len(measured) < processes:
                worker.terminate()
            worker.join()
    return sum(measured)


def split(cell: str, size: str, batch: int, rounds: int, repeats: int) -> list[dict[str, Any]]:
    ways = {"one run, 2 threads": (1, 2), "two runs, 1 thread each": (2, 1)}
    seq_s: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, (processes, threads) in ways.items():
            seq_s[way].append(_measure(processes, threads, cell, size, batch, repeats))
    alone = statistics.median(seq_s["one run, 2 threads"])
    rows = []
    for way, measured in seq_s.items():
        total = statistics.median(measured)
        rows.append(
            {
                "measure": "split",
                "cell": cell,
                "size": size,
                "batch": batch,
                "way": way,
                "seq_s": round(total, 1),
                "vs_one_run": round(total / alone, 2),
            }
        )
        print(f"{cell}-{size} b{batch}, {way}: {total:.0f} seq/s in all", flush=True)
    return rows


def _seconds_per_product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        torch.mm(a, b, out=out)
    return (time.perf_counter() - start) / count


def gemm(batch: int, units: int, gates: int, repeats: int, peak: int = PEAK_SIZE):
    """The step's GEMM and a ``[peak, peak] x [peak, peak]`` one (as near the machine's top
    rate as a GEMM gets: the ceiling of the bfloat16 / float32 ratio), float32 and bfloat16
    taking turns in every repeat so that both see the same machine."""
    torch.manual_seed(0)
    shapes = {"step": (batch, units, gates * units)}
    if peak:
        shapes["peak"] = (peak, peak, peak)
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for kind, (m, k, n) in shapes.items():
            h = torch.randn(m, k, dtype=torch.float64)
            w = torch.randn(k, n, dtype=torch.float64) / k**0.5
            exact = h @ w
            dtypes = (torch.float32, torch.bfloat16)
            operands = {dtype: (h.to(dtype), w.to(dtype)) for dtype in dtypes}
            outs = {dtype: a @ b for dtype, (a, b) in operands.items()}
            # a sequence's worth of steps a repeat; the big product about as long
            count = STEPS if kind == "step" else max(10, STEPS * batch * units * units // m**3)
            times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in dtypes}
            for _ in range(repeats):
                for dtype in dtypes:
                    a, b = operands[dtype]
                    times[dtype].append(_seconds_per_product(a, b, outs[dtype], count))
            for dtype in dtypes:
                name = str(dtype).removeprefix("torch.")
                gflops = 2 * m * k * n / statistics.median(times[dtype]) / 1e9
                error = ((outs[dtype].double() - exact).norm() / exact.norm()).item()
                rows.append(
                    {
                        "measure": "gemm",
                        "product": kind,
                        "shape": f"[{m}, {k}] x [{k}, {n}]",
                        "dtype": name,
                        "gflops": round(gflops, 1),
                        "rel_error": float(f"{error:.2g}"),
                    }
                )
                print(f"{kind} GEMM {name}: {gflops:.1f} GFLOP/s, relative error {error:.1e}")
    finally:
        torch.set_num_threads(threads)
    return rows


def bfloat16_product(h: torch.Tensor, weight_hh: torch.Tensor) -> torch.Tensor:
    """``h W_hh^T`` as a bfloat16 GEMM accumulating in float32 computes it: both factors rounded
    to bfloat16, whose products float32 holds exactly, summed in float32."""
    return h.bfloat16().float() @ weight_hh.bfloat16().float().T


def classify_with_products(model, x: torch.Tensor, product) -> torch.Tensor:
    """Classifier ``model``'s logits ``[B, classes]`` for ``x [B, T, F]``, its stack run step by
    step by the reference cells with recurrent products ``product``."""
    from seqrnn.nn.reference import reference_forward

    _, state, _ = reference_forward(model.stack, model.input_proj(x), product=product)
    return model.head(model.stack.top_output(state))


def precision(ckpt: str, images: int, batch: int = 250) -> list[dict[str, Any]]:
    from seqrnn.data import MNISTSequenceDataModule
    from seqrnn.nn.reference import exact_product
    from seqrnn.training.checkpoints import TRAINED_DATA_KEYS, load_trained

    model, _, trained_on = load_trained(ckpt, "the cores benchmark", "cpu", tasks=("classify",))
    settings = {key: trained_on[key] for key in TRAINED_DATA_KEYS if key in trained_on}
    datamodule = MNISTSequenceDataModule(**settings)
    datamodule.setup()
    x, labels = (part[:images] for part in datamodule.splits["test"])
    rows, exact_answers = [], None
    with torch.inference_mode():
        for name, product in (("float32", exact_product), ("bfloat16", bfloat16_product)):
            started = time.perf_counter()
            chunks = [
                classify_with_products(model, part.float(), product) for part in x.split(batch)
            ]
            answers = torch.cat(chunks).argmax(-1)
            seconds = time.perf_counter() - started
            exact_answers = answers if exact_answers is None else exact_answers
            accuracy = (answers == labels).float().mean().item()
            print(f"{ckpt}, products in {name}: test accuracy {accuracy:.4f} ({seconds:.0f} s)")
            row = {"measure": "precision", "model": ckpt, "images": len(labels), "products": name}
            changed = int((answers != exact_answers).sum())
            rows.append({**row, "test_acc": round(accuracy, 4), "answers_changed": changed})
    return rows


def run(
    cell: str = "gru",
    size: str = "1x128",
    batch: int = 128,
    rounds: int = 3,
    repeats: int = 3,
    gemm_repeats: int = 5,
    ckpt: str = "pretrained:classify-gru-1x128",
    images: int = 10000,
) -> dict[str, Any]:
    """The three measures above; ``images=0``: no ``precision`` (it needs real MNIST)."""
    from seqrnn.bench.common import device
    from seqrnn.bench.train_throughput import parse_size

    if device().type != "cpu":
        print("cores: a CPU question; nothing measured on a machine with a GPU", flush=True)
        return {"cell": cell, "size": size, "batch": batch, "rows": []}
    rows = split(cell, size, batch, rounds, repeats)
    _, units = parse_size(size)
    rows += gemm(batch, units, 3 if cell == "gru" else 4, gemm_repeats)
    if images:
        rows += precision(ckpt, images)
    return {"cell": cell, "size": size, "batch": batch, "rounds": rounds, "rows": rows}
