"""Evaluate a checkpoint on the train, validation and test splits.

    python -m experiments.evaluate ckpt=pretrained:classify-gru-1x128
    python -m experiments.evaluate ckpt=outputs/predict/gru-1x64/<stamp>
    python -m experiments.evaluate ckpt=<run dir or .ckpt> limit_batches=2

Prints the same metrics as a run's ``results.json`` and writes them to ``evaluation.json`` in
its own dir (``outputs/evaluate/<stamp>``), so any shipped number can be checked in one command.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from experiments._cli import check_trained_job, entry_point, quiet_lightning, trained_data


def run(cfg: DictConfig) -> dict:
    import lightning as L

    from seqrnn.files import write_json_atomic
    from seqrnn.layout import EVALUATION_FILE
    from seqrnn.training import describe_model, evaluate_splits
    from seqrnn.training.checkpoints import load_trained, resolve_device

    quiet_lightning()
    device = resolve_device(cfg.device)
    model, path, trained_on = load_trained(cfg.ckpt, "evaluate", device)
    datamodule = trained_data(cfg, trained_on)
    trainer = L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_test_batches=cfg.limit_batches,
    )
    metrics = evaluate_splits(trainer, model, datamodule)
    evaluation = {"checkpoint": str(cfg.ckpt), **describe_model(model, datamodule), **metrics}
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / EVALUATION_FILE, evaluation)
    print(f"checkpoint: {path}")
    print(f"results:    {out_dir / EVALUATION_FILE}")
    for split, count in evaluation["evaluated"].items():
        numbers = ", ".join(
            f"{key.removeprefix(f'{split}_')} {value:.4f}"
            for key, value in evaluation.items()
            if key.startswith(f"{split}_") and isinstance(value, float)
        )
        print(f"  {split:<5} ({count} examples): {numbers}")
    return evaluation


if __name__ == "__main__":
    entry_point(
        "evaluate", run, required={"ckpt": "the checkpoint to evaluate"}, check=check_trained_job
    )
