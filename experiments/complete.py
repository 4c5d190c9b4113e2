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

from experiments._cli import prepare_argv, print_study_outputs, user_errors


def load_predictor(cfg: DictConfig):
    """The ``task=predict`` model of ``cfg.ckpt`` on ``cfg.device``, and the MNIST DataModule
    (set up) binarized as that model was trained: ``(model, datamodule, checkpoint path)``."""
    import torch
    from hydra.utils import instantiate

    from seqrnn.checkpoints import load_model, read_checkpoint, resolve_checkpoint

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
    return model, datamodule, path


def run(cfg: DictConfig) -> dict:
    from seqrnn.completion import check_horizons, run_study

    check_horizons(list(cfg.horizons), cfg.hidden)  # before the slow part
    model, datamodule, path = load_predictor(cfg)
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
    print_study_outputs(out_dir, report, ["completion.json", "summary.md"])
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
    sys.argv = [
        sys.argv[0],
        *prepare_argv(sys.argv[1:], required={"ckpt": "the task=predict model to complete with"}),
    ]
    main()
