"""The recurrent stack on each backend, against what the hardware can do.

For cell x size x backend x batch: sequences per second of forward + backward of the last output
(the classifier's use: read from the final state), from the pixel through the input affine and
the stack, on random binary sequences ``[B, 784, 1]``; the median over a few batches after one
warm-up. In the same run, the machine's GEMM rate (a 2048 x 2048 x 2048 float32 matmul, median
of 5), each row's share of it (``of_gemm_limit``), and each fused row's speed over
``nn.GRU``/``nn.LSTM``'s at the same cell, size and batch (``vs_torch``). The useful FLOPs of a
sequence are 3 x 784 x sum over layers of 2 G H (I + H) (forward GEMMs, and twice that backward;
G = 3 gates for a GRU, 4 for an LSTM; I = 1 pixel for the first layer, whose input affine folds
into its weights, H above), times sequences per second, over the GEMM rate.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from seqrnn.bench.common import device, sync, timed
from seqrnn.bench.train_throughput import SIZES, parse_size
from seqrnn.nn import RecurrentStack
from seqrnn.nn.fused import extension

QUICK = {"sizes": ("1x32",), "batches": (64,), "repeats": 2}
STEPS = 784


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Float32 GEMM rate of this machine, GFLOP/s (median of ``repeats`` n x n x n products)."""
    dev = device()
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b
    return 2 * n**3 / statistics.median(timed(lambda: a @ b, dev) for _ in range(repeats)) / 1e9


def useful_flops(cell: str, layers: int, units: int, inputs: int = 1) -> float:
    gates = 3 if cell == "gru" else 4
    per_step = sum(
        2 * gates * units * ((inputs if layer == 0 else units) + units) for layer in range(layers)
    )
    return 3 * STEPS * per_step


def sequences_per_second(stack, proj, batch: int, repeats: int) -> float:
    dev = device()
    x = torch.randint(0, 2, (batch, STEPS, 1), device=dev).float()

    def step():
        _, state = stack(x, input_proj=proj)
        stack.top_output(state).sum().backward()

    step()  # warm-up (and, the first time, the fused kernel's build)
    times = []
    for _ in range(repeats):
        sync(dev)
        start = time.perf_counter()
        step()
        sync(dev)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def run(sizes=SIZES, batches=(256, 1024), repeats: int = 3) -> dict[str, Any]:
    dev = device()
    backends = ["torch"] + (["fused"] if dev.type == "cpu" and extension() is not None else [])
    limit = gemm_gflops()
    rows = []
    torch_seq_s: dict[tuple[int, str, str], float] = {}
    for batch in batches:
        for size in sizes:
            layers, units = parse_size(size)
            for cell in ("gru", "lstm"):
                for backend in backends:
                    torch.manual_seed(0)
                    stack = RecurrentStack(
                        cell=cell, input_size=units, units=units, layers=layers, backend=backend
                    ).to(dev)
                    proj = nn.Linear(1, units).to(dev)
                    seq_s = sequences_per_second(stack, proj, batch, repeats)
                    gflops = seq_s * useful_flops(cell, layers, units) / 1e9
                    row = {
                        "batch": batch,
                        "cell": cell,
                        "size": size,
                        "backend": backend,
                        "seq_s": round(seq_s, 1),
                        "gflops": round(gflops, 1),
                        "of_gemm_limit": round(gflops / limit, 3),
                    }
                    if backend == "torch":
                        torch_seq_s[batch, cell, size] = seq_s
                    else:
                        row["vs_torch"] = round(seq_s / torch_seq_s[batch, cell, size], 2)
                    rows.append(row)
                    print(
                        f"b{batch} {cell}-{size} {backend}: {seq_s:.0f} seq/s, "
                        f"{gflops / limit:.0%} of the GEMM rate",
                        flush=True,
                    )
    return {"gemm_gflops": round(limit, 1), "steps": STEPS, "repeats": repeats, "rows": rows}
