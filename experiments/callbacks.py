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
