"""The whole study, resumable: both grids with their recipes, the shipped weights, the report,
completion, in-painting and the state analysis.

    python -m experiments.study                      # (make study) everything not done yet
    python -m experiments.study tasks=[classify] cells=[gru] sizes=[1x32] dry_run=true

The plan lives in conf/study.yaml (which runs, their time budgets, threads); how each run trains
is its recipe (conf/recipe); what each step does: :mod:`seqrnn.sweeps.study`.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments._cli import entry_point


def run(cfg: DictConfig) -> None:
    from seqrnn.sweeps.study import StudyPlan, run_study

    run_study(
        StudyPlan(
            tasks=list(cfg.tasks),
            cells=list(cfg.cells),
            sizes=list(cfg.sizes),
            budgets=OmegaConf.to_container(cfg.budgets, resolve=True),
            out=Path(cfg.out),
            docs=Path(cfg.docs),
            pretrained=Path(cfg.pretrained),
            predictor=cfg.predictor,
            threads=cfg.threads,
            train=cfg.train,
            studies=cfg.studies,
            dry_run=cfg.dry_run,
        )
    )


if __name__ == "__main__":
    entry_point("study", run)
