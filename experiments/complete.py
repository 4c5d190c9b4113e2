"""Complete hidden image ends with a trained next-pixel predictor.

    python -m experiments.complete ckpt=outputs/predict/gru-1x64/<stamp>
    python -m experiments.complete ckpt=<run dir> samples=20 horizons=[1,10,28,100,300]

Writes completion.json, summary.md, figures/*.png and TensorBoard logs into its own run dir
(``outputs/complete/<stamp>``) and prints where they went.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from experiments._cli import (
    check_trained_job,
    entry_point,
    print_study_outputs,
    reading_order,
    trained_data,
)
from seqrnn.layout import COMPLETION_FILE, COMPLETION_SUMMARY


def run(cfg: DictConfig) -> dict:
    from seqrnn.studies.completion import check_horizons, run_completion
    from seqrnn.training.checkpoints import check_order, load_trained

    check_horizons(list(cfg.horizons), cfg.hidden)  # before the slow part
    model, path, trained_on = load_trained(cfg.ckpt, "complete", cfg.device)
    check_order(path, trained_on, "complete", ("pixel", "permuted"))
    datamodule = trained_data(cfg, trained_on)  # in the model's order (permuted too)
    images, labels = datamodule.splits["test"]
    out_dir = Path(cfg.paths.output_dir)
    report = run_completion(
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
        reading=reading_order(trained_on),
    )
    print_study_outputs(out_dir, report, [COMPLETION_FILE, COMPLETION_SUMMARY])
    for row in report["table"]:
        print(
            f"  n={row['n']:>3}: samples CE {row['samples_ce']:.4f}, ground truth CE "
            f"{row['truth_ce']:.4f}, greedy accuracy {row['greedy_acc']:.4f}"
        )
    return report


if __name__ == "__main__":
    entry_point(
        "complete",
        run,
        required={"ckpt": "the task=predict model to complete with"},
        check=check_trained_job,
    )
