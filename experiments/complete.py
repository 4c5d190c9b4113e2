"""Complete hidden image ends with a trained next-pixel predictor.

    python -m experiments.complete ckpt=outputs/predict/gru-1x64/<stamp>
    python -m experiments.complete ckpt=<run dir> samples=20 horizons=[1,10,28,100,300]

Writes completion.json, summary.md, figures/*.png and TensorBoard logs into its own run dir
(``outputs/complete/<stamp>``) and prints where they went.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from experiments._cli import fail, prepare_argv, user_errors


def run(cfg: DictConfig) -> dict:
    import torch
    from hydra.utils import instantiate

    from seqrnn.checkpoints import load_model, read_checkpoint, resolve_checkpoint
    from seqrnn.completion import check_horizons, run_study

    check_horizons(list(cfg.horizons), cfg.hidden)  # before the slow part
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = resolve_checkpoint(cfg.ckpt)
    trained_on = read_checkpoint(path, "predict").get("datamodule_hyper_parameters", {})
    model = load_model(path, "predict", device)
    # Where the files are comes from this config; how they were binarized, from the checkpoint.
    threshold = trained_on.get("threshold", cfg.data.threshold)
    datamodule = instantiate(cfg.data, order="pixel", threshold=threshold)
    datamodule.setup()
    images, labels = datamodule.splits["test"]
    out_dir = Path(cfg.paths.output_dir)
    report = run_study(
        model,
        images,
        labels,
        out_dir,
        count=cfg.count,
        hidden=cfg.hidden,
        horizons=tuple(cfg.horizons),
        samples=cfg.samples,
        shown_samples=cfg.shown_samples,
        scratch=cfg.scratch,
        min_ink=cfg.min_ink,
        seed=cfg.seed,
        checkpoint=str(path),
    )
    print(f"output dir:  {out_dir}")
    print(f"table:       {out_dir / 'completion.json'}, {out_dir / 'summary.md'}")
    names = ", ".join(Path(f).name for f in report["figures"])
    print(f"figures:     {out_dir / 'figures'}  ({names})")
    print(f"tensorboard: tensorboard --logdir {out_dir / 'tensorboard'}")
    for row in report["table"]:
        print(
            f"  n={row['n']:>3}: samples CE {row['samples_ce']:.4f}, ground truth CE "
            f"{row['truth_ce']:.4f}, greedy accuracy {row['greedy_acc']:.4f}"
        )
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="complete")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


if __name__ == "__main__":
    argv = prepare_argv(sys.argv[1:])
    if not any(a.startswith("ckpt=") for a in argv):
        fail("ckpt=<run dir or .ckpt> is required: the task=predict model to complete with")
    sys.argv = [sys.argv[0], *argv]
    main()
