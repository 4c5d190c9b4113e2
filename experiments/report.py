"""Tables and validation curves of many runs.

    python -m experiments.report outputs/multirun/<stamp>     # one sweep
    python -m experiments.report outputs                      # every run there is
    python -m experiments.report outputs --out reports/today

Writes report.md, report.csv and curves_<task>_<cell>_<data>.png into the folder (or --out).
A sweep writes its own report when it ends (the Hydra callback in experiments.callbacks).
"""

from __future__ import annotations

from pathlib import Path

from experiments._cli import OneLineParser, fail, user_errors


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a sweep dir, a run dir or outputs/")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: root)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        fail(f"{args.root} is not a folder; give a sweep dir (outputs/multirun/...) or outputs/")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        fail(f"--out {args.out} is a file; give the folder to write the report into")
    from seqrnn.sweeps.report import find_runs, write_report

    if not find_runs(args.root):
        fail(
            f"no runs in {args.root}: no run dir (one with .hydra/config.yaml or results.json) "
            "below it; give a sweep dir (outputs/multirun/...) or outputs/"
        )

    with user_errors():
        written = write_report(args.root, args.out)
    print(f"report:  {written['markdown']}")
    print(f"table:   {written['csv']}")
    curves = [path.name for kind, path in written.items() if kind.startswith("curves_")]
    if curves:
        print(f"curves:  {', '.join(curves)}")


if __name__ == "__main__":
    main()
