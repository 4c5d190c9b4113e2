"""The recurrent stack on each backend, against what the hardware can do.

For cell x size x backend x batch: sequences per second of forward + backward of the last output
(the classifier's use: read from the final state), from the pixel through the input affine and
the stack, on random binary sequences ``[B, 784, 1]``; the median over a few batches after one
warm-up, the backends of a cell and size measured in interleaved rounds (so that the machine's
drift in speed during a run, which was up to 30% here, touches them alike). In the same run,
the machine's GEMM rate (a 2048 x 2048 x 2048 float32 matmul, median of 5), each row's share of
it (``of_gemm_limit``), and each fused row's speed over ``nn.GRU``/``nn.LSTM``'s at the same
cell, size and batch (``vs_torch``); the fused LSTM rows come twice, the backward recomputing
the gates and reading those the forward kept (``gates``). The useful FLOPs of a sequence are
3 x 784 x sum over layers of 2 G H (I + H) (forward GEMMs, and twice that backward; G = 3 gates
for a GRU, 4 for an LSTM; I = 1 pixel for the first layer, whose input affine folds into its
weights, H above), times sequences per second, over the GEMM rate. On a CPU the fused rows come
once more under bfloat16 autocast (``precision: bf16-mixed``, as ``trainer.precision=bf16-mixed``
trains: the GEMMs of layers from ``BF16_FROM_UNITS`` units on in bfloat16), interleaved with the
float32 ones, with their speed over the float32 fused kernels (``vs_float32``).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn

from seqrnn.bench.common import device, timed
from seqrnn.bench.train_throughput import SIZES, parse_size
from seqrnn.nn import RecurrentStack
from seqrnn.nn.fused import extension, gates_kept

PRECISIONS = ("32-true", "bf16-mixed")

QUICK = {"sizes": ("1x32",), "batches": (64,), "repeats": 2}
STEPS = 784
# A fused LSTM layer's backward recomputes its gates or reads the ones its forward kept: both
# are measured (seqrnn.nn.fused.KEEP_LSTM_GATES_FROM_UNITS picks by width from these numbers).
GATES = {"–": None, "recomputed": False, "kept": True}


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


def seconds_per_batch(stacks: list, proj, batch: int, repeats: int) -> list[float]:
    """Median seconds of a forward + backward of each ``(stack, keep_gates, precision)``, in
    ``repeats`` interleaved rounds (one batch of each in turn, after one warm-up each), so a
    change of the machine's speed during the run touches every variant alike."""
    dev = device()
    x = torch.randint(0, 2, (batch, STEPS, 1), device=dev).float()

    def step(stack, keep, precision):
        bf16 = precision == "bf16-mixed"
        with gates_kept(keep), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            _, state = stack(x, input_proj=proj)
            loss = stack.top_output(state).float().sum()
        loss.backward()

    for case in stacks:  # warm-up (and, the first time, the fused kernel's build)
        step(*case)
    times: list[list[float]] = [[] for _ in stacks]
    for _ in range(repeats):
        for case, spent in zip(stacks, times, strict=True):
            spent.append(timed(lambda c=case: step(*c), dev))
    return [statistics.median(spent) for spent in times]


def variants(cell: str, fused: bool) -> list[tuple[str, str, str]]:
    """(backend, gates, precision) rows of a cell: nn.GRU / nn.LSTM, then the fused kernel;
    an LSTM's twice, its backward recomputing the gates and reading the ones its forward kept;
    each fused row in float32 and under bfloat16 autocast."""
    if not fused:
        return [("torch", "–", "32-true")]
    kernels = [("fused", "recomputed")] + [("fused", "kept")] * (cell == "lstm")
    return [("torch", "–", "32-true")] + [
        (backend, gates, precision) for backend, gates in kernels for precision in PRECISIONS
    ]


def run(sizes=SIZES, batches=(128, 256, 1024), repeats: int = 5) -> dict[str, Any]:
    dev = device()
    fused = dev.type == "cpu" and extension() is not None
    limit = gemm_gflops()
    rows = []
    for batch in batches:
        for size in sizes:
            layers, units = parse_size(size)
            for cell in ("gru", "lstm"):
                torch.manual_seed(0)
                proj = nn.Linear(1, units).to(dev)
                cases = variants(cell, fused)
                stack = {
                    backend: RecurrentStack(cell, units, units, layers, backend=backend).to(dev)
                    for backend in {backend for backend, _, _ in cases}
                }
                for one in stack.values():  # the same weights on every backend
                    one.load_state_dict(next(iter(stack.values())).state_dict())
                stacks = [
                    (stack[backend], GATES[gates], precision) for backend, gates, precision in cases
                ]
                seconds = seconds_per_batch(stacks, proj, batch, repeats)
                for (backend, gates, precision), spent in zip(cases, seconds, strict=True):
                    seq_s = batch / spent
                    gflops = seq_s * useful_flops(cell, layers, units) / 1e9
                    row = {
                        "batch": batch,
                        "cell": cell,
                        "size": size,
                        "backend": backend,
                        "gates": gates,
                        "precision": precision,
                        "seq_s": round(seq_s, 1),
                        "gflops": round(gflops, 1),
                        "of_gemm_limit": round(gflops / limit, 3),
                    }
                    if backend != "torch":
                        row["vs_torch"] = round(seconds[0] / spent, 2)
                    if precision != "32-true":  # the float32 row of the same kernel is the last
                        row["vs_float32"] = round(seq_s / rows[-1]["seq_s"], 2)
                    rows.append(row)
                    print(
                        f"b{batch} {cell}-{size} {backend} ({gates} gates, {precision}): "
                        f"{seq_s:.0f} seq/s, "
                        f"{gflops / limit:.0%} of the GEMM rate",
                        flush=True,
                    )
    return {"gemm_gflops": round(limit, 1), "steps": STEPS, "repeats": repeats, "rows": rows}
