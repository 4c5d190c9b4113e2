"""Ship a run's trained weights: its best checkpoint without optimizer or loop state.

    python -m experiments.export outputs/study/classify-gru-1x128
    python -m experiments.export <run dir or .ckpt> --to seqrnn/pretrained

Writes ``<task>-<cell>-<layers>x<units>.ckpt`` (``-permuted`` or ``-row`` after it for a model of
that reading order) into ``--to`` (default: seqrnn/pretrained, the
package's shipped weights, which ``ckpt=pretrained:<name>`` finds). A file that is there already
(a shipped checkpoint among them) is replaced only with ``--force``; the new file is written
whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

from experiments._cli import OneLineParser, fail, user_errors


def main(argv: list[str] | None = None) -> Path:
    from seqrnn.pretrained import PRETRAINED_DIR, pretrained_name
    from seqrnn.training.checkpoints import export_weights, read_checkpoint, resolve_checkpoint

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", help="a run dir (its best checkpoint) or a .ckpt file")
    parser.add_argument("--to", type=Path, default=PRETRAINED_DIR, help="folder to write into")
    parser.add_argument(
        "--force", action="store_true", help="replace a checkpoint of the same name there"
    )
    args = parser.parse_args(argv)
    if args.to.exists() and not args.to.is_dir():
        fail(f"--to {args.to} is a file; give the folder to write the checkpoint into")
    with user_errors():
        source = resolve_checkpoint(args.ckpt)
        checkpoint = read_checkpoint(source)
        hp = checkpoint.get("hyper_parameters", {})
        order = checkpoint.get("datamodule_hyper_parameters", {}).get("order", "pixel")
        name = pretrained_name(checkpoint["task"], hp["cell"], hp["layers"], hp["units"], order)
        target = export_weights(source, args.to / f"{name}.ckpt", overwrite=args.force)
    print(f"{source} -> {target} ({target.stat().st_size / 1e6:.2f} MB)")
    return target


if __name__ == "__main__":
    main()
