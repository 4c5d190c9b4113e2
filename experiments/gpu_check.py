"""A one-minute self-check of a GPU against the CPU: ``python -m experiments.gpu_check``.

The stack, the completion sampler and exact in-painting on the GPU against the CPU, then one tiny
training run per task on the GPU and one in mixed precision (:mod:`seqrnn.bench.gpu_check`).
``--device cpu`` runs the same checks on the CPU alone (the fused kernels against the reference).
Exits 1 when a check fails.
"""

from __future__ import annotations

import sys

from experiments._cli import OneLineParser, fail, quiet_lightning


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--no-runs", action="store_true", help="skip the tiny training runs")
    args = parser.parse_args(argv)
    import torch

    from seqrnn.bench import gpu_check

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        fail(
            f"--device {args.device}: no CUDA device here (torch {torch.__version__}); "
            "--device cpu runs the same checks on the CPU"
        )
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        fail(f"--device {args.device} is not a device seqrnn checks; choose cuda, cuda:N or cpu")
    quiet_lightning()
    rows = gpu_check.run(args.device, runs=not args.no_runs)
    failed = [row["check"] for row in rows if not row["ok"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed on {args.device}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
