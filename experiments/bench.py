"""Benchmarks: ``python -m experiments.bench [stack_backends] [train_throughput] [sampling] ...``.

Each benchmark writes ``<outputs root>/bench/<name>.json`` (``outputs/`` unless
``$SEQRNN_OUTPUTS`` says else; numbers, settings, machine) and prints a
table. ``--quick`` runs a small version of each, to check that it works.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from pathlib import Path

import torch

from experiments._cli import OneLineParser, fail, quiet_lightning, user_errors
from experiments._preflight import Refused, check_writable
from seqrnn.bench import (
    common,
    cores,
    inpainting,
    neighbours,
    sampling,
    stack_backends,
    train_throughput,
)
from seqrnn.layout import outputs_root

BENCHMARKS = {
    "stack_backends": stack_backends,
    "train_throughput": train_throughput,
    "sampling": sampling,
    "inpainting": inpainting,
    "cores": cores,
    "neighbours": neighbours,
}


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(BENCHMARKS)} (default all)")
    parser.add_argument(
        "--out", default=f"{outputs_root()}/bench", help="folder for the JSON reports"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of each benchmark")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch's threads (default: torch's own choice)"
    )
    parser.add_argument(
        "--sizes", default=None, help="sizes to measure, e.g. 1x64,1x128 (default: each's own)"
    )
    parser.add_argument("--batch", type=int, default=None, help="one batch size to measure at")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads}: give a number of threads >= 1")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch {args.batch}: give a batch size >= 1")
    sizes = tuple(args.sizes.split(",")) if args.sizes else None
    if sizes and not all(SIZE.fullmatch(size) for size in sizes):
        parser.error(f"--sizes {args.sizes}: give <layers>x<units>[,...], e.g. 1x64,1x128")
    quiet_lightning()
    # One Trainer per row: their banners would bury the table.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from: {', '.join(BENCHMARKS)}")
    try:  # before minutes of measuring, not after
        check_writable(Path(args.out), "--out")
    except Refused as refused:
        fail(str(refused))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in args.names or BENCHMARKS:
        started = time.perf_counter()
        module = BENCHMARKS[name]
        chosen = chosen_settings(module.run, sizes, args.batch)
        report = module.run(**{**(module.QUICK if args.quick else {}), **chosen})
        report.update(
            benchmark=name,
            machine=common.machine(),
            seconds=round(time.perf_counter() - started, 1),
        )
        with user_errors():
            path = common.write_bench_json(f"{args.out}/{name}.json", report)
        columns = list(dict.fromkeys(c for row in report["rows"] for c in row))
        common.print_table(report["rows"], columns)
        print(f"wrote {path}")


SIZE = re.compile(r"[1-9][0-9]*x[1-9][0-9]*")


def chosen_settings(run, sizes: tuple[str, ...] | None, batch: int | None) -> dict:
    """``--sizes`` and ``--batch`` as the keywords a benchmark's ``run`` takes (``sizes`` or
    ``size``; ``batch_size``, ``batch`` or ``batches``); a benchmark without them ignores them."""
    takes = inspect.signature(run).parameters
    chosen = {}
    if sizes:
        if "sizes" in takes:
            chosen["sizes"] = sizes
        elif "size" in takes:
            chosen["size"] = sizes[0]
    if batch:
        # (train_throughput's `batches` counts batches: its batch size is `batch_size`)
        for key, value in (("batch_size", batch), ("batch", batch), ("batches", (batch,))):
            if key in takes:
                chosen[key] = value
                break
    return chosen


if __name__ == "__main__":
    main()
