"""Exact in-painting of hidden pixels with a trained next-pixel predictor.

    python -m experiments.inpaint ckpt=outputs/predict/gru-1x64/<stamp> dataset=one_pixel
    python -m experiments.inpaint ckpt=<run dir> dataset=two_by_two
    python -m experiments.inpaint ckpt=<run dir> dataset=my_images.npz max_hidden=10

Writes inpaint.json, posterior.npz, dataset.npz, figures/*.png and TensorBoard logs into its own
run dir (``outputs/inpaint/<stamp>``) and prints where they went.
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
from seqrnn.layout import INPAINT_FILE, POSTERIOR_FILE


def run(cfg: DictConfig) -> dict:
    from seqrnn.errors import require_int
    from seqrnn.studies.inpainting import (
        KINDS,
        build_set,
        check_hidden_counts,
        load_set,
        run_inpainting,
    )
    from seqrnn.training.checkpoints import check_order, load_trained

    require_int("max_hidden", cfg.max_hidden, 1)
    model, path, trained_on = load_trained(cfg.ckpt, "inpaint", cfg.device)
    check_order(path, trained_on, "inpaint", ("pixel", "permuted"))
    # the set is made and shown in image places; a permuted model reads it in its own order
    datamodule = trained_data(cfg, trained_on, order="pixel")
    if cfg.dataset in KINDS:
        images, labels = datamodule.splits["test"]
        dataset = build_set(images, labels, cfg.dataset, cfg.count, cfg.placement, cfg.seed)
        check_hidden_counts(dataset.hidden_counts.numpy(), cfg.max_hidden)
    else:
        dataset = load_set(cfg.dataset, cfg.max_hidden)
    out_dir = Path(cfg.paths.output_dir)
    report = run_inpainting(
        model,
        dataset,
        out_dir,
        dataset_name=str(cfg.dataset),
        shown=cfg.shown,
        max_sequences=cfg.max_sequences,
        checkpoint=str(path),
        reading=reading_order(trained_on),
    )
    print_study_outputs(out_dir, report, [INPAINT_FILE, POSTERIOR_FILE])
    for key, value in report.get("metrics", {}).items():
        print(f"  {key:<16} {value:.4f}" if isinstance(value, float) else f"  {key:<16} {value}")
    return report


if __name__ == "__main__":
    entry_point(
        "inpaint",
        run,
        required={"ckpt": "the task=predict model to in-paint with"},
        check=check_trained_job,
    )
