"""Benchmarks: ``python -m experiments.bench [train_throughput] [--quick]``.

Each benchmark writes ``outputs/bench/<name>.json`` (numbers, settings, machine) and prints a
table. ``--quick`` measures fewer batches and sizes, to check that the benchmark runs.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

from experiments._cli import quiet_lightning
from seqrnn.bench import common, train_throughput

BENCHMARKS = {"train_throughput": train_throughput}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of: {', '.join(BENCHMARKS)} (default all)")
    parser.add_argument("--out", default="outputs/bench", help="folder for the JSON reports")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 batches, 2 sizes")
    args = parser.parse_args(argv)
    quiet_lightning()
    # One Trainer per row: their banners and the "no val_dataloader" hint would bury the table.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from: {', '.join(BENCHMARKS)}")
    for name in args.names or BENCHMARKS:
        started = time.perf_counter()
        kwargs = {"batches": 2, "sizes": ("1x32", "3x32")} if args.quick else {}
        report = BENCHMARKS[name].run(**kwargs)
        report.update(
            benchmark=name,
            machine=common.machine(),
            seconds=round(time.perf_counter() - started, 1),
        )
        path = common.write_report(f"{args.out}/{name}.json", report)
        columns = [c for c in report["rows"][0]]
        common.print_table(report["rows"], columns)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
