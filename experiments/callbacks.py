"""Hydra callbacks (configured under ``hydra.callbacks`` in conf/train.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class WriteReport(Callback):
    """When a sweep ends, write its report (``report.md``, ``report.csv``, curves) into it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from seqrnn.sweeps.report import write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            print(f"sweep report: {write_report(sweep_dir)['markdown']}")


class WatchSlurmQueue(Callback):
    """Before a sweep through ``hydra/launcher=slurm``: job states from ``squeue`` where
    ``sacct`` is not available (:mod:`seqrnn.sweeps.slurm`)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.launcher.get("_target_", "")).endswith(".SlurmLauncher"):
            from seqrnn.sweeps.slurm import watch_the_queue

            watch_the_queue()
