"""The whole study, resumable: both grids with their recipes, the shipped weights, the report,
completion, in-painting and the state analysis.

    python -m experiments.study                      # (make study) everything not done yet
    python -m experiments.study tasks=[classify] cells=[gru] sizes=[1x32] dry_run=true

The plan lives in conf/study.yaml (which runs, their time budgets, threads, how many at a
time); how each run trains is its recipe (conf/recipe); what each step does:
:mod:`seqrnn.sweeps.study`.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments._cli import entry_point, group_options


def run(cfg: DictConfig) -> None:
    from seqrnn.errors import ConfigError, require_bool, require_int
    from seqrnn.sweeps.study import StudyPlan, run_whole_study

    for key, group in (("tasks", "task"), ("cells", "cell"), ("sizes", "size")):
        known = group_options(group)
        for value in cfg[key]:
            if str(value) not in known:
                raise ConfigError(
                    f"{key}={list(cfg[key])}: {value} is not a known {group}; "
                    f"choose from: {', '.join(known)}"
                )
    for key in ("train", "studies", "dry_run"):
        require_bool(key, cfg[key])
    require_int("threads", cfg.threads, 1)
    require_int("workers", cfg.workers, 1)
    run_whole_study(
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
            workers=cfg.workers,
            train=cfg.train,
            studies=cfg.studies,
            dry_run=cfg.dry_run,
        )
    )


if __name__ == "__main__":
    entry_point("study", run)
