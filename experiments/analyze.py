"""What a trained model does over time.

    python -m experiments.analyze ckpt=outputs/classify/gru-1x128/<stamp> image=7
    python -m experiments.analyze ckpt=outputs/dirichlet/gru-1x32/<stamp>

For a classifier: heat maps of every layer's states over one test image, and the accuracy and
confidence of the head read at every step over the test set (when does it know the digit?).
For a ``task=dirichlet`` predictor: its predictive against the Bayesian posterior predictive,
KL and cross-entropies on the test sequences and on sequences with a fixed p, and plots.
Writes analysis.json, figures/*.png and TensorBoard logs into outputs/analyze/<stamp>.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from experiments._cli import check_trained_job, entry_point, print_study_outputs, trained_data
from seqrnn.layout import ANALYSIS_FILE


def run(cfg: DictConfig) -> dict:
    from seqrnn.data import DirichletSequenceDataModule
    from seqrnn.errors import CheckpointError, require_int
    from seqrnn.models import SequenceClassifier, SymbolPredictor
    from seqrnn.studies.analysis import analyze_classifier, analyze_symbols
    from seqrnn.training.checkpoints import load_trained

    # the tasks whose jobs list "analyze" (for task=predict: experiments.complete and inpaint)
    model, path, trained_on = load_trained(cfg.ckpt, "analyze", cfg.device)
    if not isinstance(model, SequenceClassifier | SymbolPredictor):
        raise CheckpointError(
            f"checkpoint {path} is of task={model.task}; analyze reads classifiers and symbol "
            "predictors (subclasses of SequenceClassifier or SymbolPredictor)"
        )
    out_dir = Path(cfg.paths.output_dir)
    if isinstance(model, SequenceClassifier):
        datamodule = trained_data(cfg, trained_on)  # in the model's order (permuted too)
        images, labels = datamodule.splits["test"]
        if cfg.count is not None:
            count = require_int("count", cfg.count, 1)
            images, labels = images[:count], labels[:count]
        report = analyze_classifier(
            model, images, labels, out_dir, cfg.image, str(path), datamodule.order
        )
        print_study_outputs(out_dir, report, [ANALYSIS_FILE])
        print(
            f"  final accuracy {report['final_accuracy']:.4f}, 95% of it from step "
            f"{report['knows_at_step']} of {images.shape[1]}"
        )
    else:
        # the run's own data settings; the process itself is the model's (one and the same
        # after training; a checkpoint saved untrained holds no data settings)
        process = {"alpha": model.hparams.alpha, "period": model.hparams.period}
        datamodule = DirichletSequenceDataModule(**{**trained_on, **process})
        datamodule.setup()
        symbols = datamodule.splits["test"][0]
        fixed_p = list(cfg.fixed_p) if cfg.fixed_p is not None else None
        report = analyze_symbols(model, symbols, out_dir, fixed_p, cfg.shown, cfg.seed, str(path))
        print_study_outputs(out_dir, report, [ANALYSIS_FILE])
        for name, row in report["table"].items():
            print(
                f"  {name:<8} KL {row['kl']:.2e}, network CE {row['network_ce']:.4f}, "
                f"Bayes CE {row['bayes_ce']:.4f} nats/symbol"
            )
    return report


if __name__ == "__main__":
    entry_point(
        "analyze",
        run,
        required={"ckpt": "a task=classify or dirichlet model"},
        check=check_trained_job,
    )
