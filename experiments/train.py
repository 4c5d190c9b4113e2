"""Train a model and evaluate its best checkpoint.

    python -m experiments.train task=classify cell=gru units=128
    python -m experiments.train size=3x32 trainer.max_epochs=20 data.order=row
    python -m experiments.train debug=fast                  # a few batches, nothing kept
    python -m experiments.train resume=<run dir>            # continue from its last.ckpt
    python -m experiments.train -m cell=gru,lstm size=1x32,3x32   # a sweep

Composes the config, builds the data, model, callbacks, loggers and trainer from it, and hands
them to :func:`seqrnn.training.train_and_evaluate`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from experiments._cli import prepare_argv, quiet_lightning, user_errors


def build_and_train(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate every part of ``cfg`` and run :func:`seqrnn.training.train_and_evaluate`."""
    import lightning as L
    from hydra.utils import instantiate

    from seqrnn.training import LAST_CHECKPOINT, train_and_evaluate

    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    # The data decides the model's input width (1 per pixel, 28 per row), so read it first.
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = instantiate(cfg.model, in_features=datamodule.features)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    run_dir = Path(cfg.paths.output_dir)
    results = train_and_evaluate(
        model,
        datamodule,
        trainer,
        run_dir,
        resume_from=run_dir / LAST_CHECKPOINT if cfg.resume else None,
        extra_hparams={"seed": cfg.seed},
    )
    if trainer.is_global_zero:
        print_outputs(run_dir, results)
    return results


def print_outputs(run_dir: Path, results: dict[str, Any]) -> None:
    """Tell the user where everything went and the headline numbers."""
    scores = ", ".join(
        f"{key} {results[key]:.4f}" for key in ("test_loss", "test_acc") if key in results
    )
    lines = [
        f"run dir:     {run_dir}",
        f"results:     {run_dir / 'results.json'}  ({scores}, {results['epochs']} epochs, "
        f"{results['wall_seconds']:.0f} s)",
        f"checkpoint:  {run_dir / results['checkpoint'] if results['checkpoint'] else 'none kept'}",
    ]
    if (run_dir / "tensorboard").is_dir():
        lines.append(f"tensorboard: tensorboard --logdir {run_dir / 'tensorboard'}")
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors():
        results = build_and_train(cfg)
    # A sweeper that optimises (e.g. Optuna) reads the returned number.
    return results.get("val_loss")


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *prepare_argv(sys.argv[1:])]
    main()
