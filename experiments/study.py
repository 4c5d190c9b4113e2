"""The whole study, resumable: grids, shipped weights, report, completion, in-painting, analysis.

    python -m experiments.study                      # (make study) everything not done yet
    python -m experiments.study tasks=[classify] cells=[gru] sizes=[1x32] dry_run=true

Each step is one of the documented commands (``experiments.train -m``, ``experiments.export``,
``experiments.report``, ``experiments.complete``, ``experiments.inpaint``,
``experiments.analyze``), printed before it runs; a step whose output exists is skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from experiments._cli import launch, user_errors
from seqrnn.layout import EVALUATION_FILE, RESULTS_FILE

PYTHON = [sys.executable, "-m"]


def run_name(task: str, cell: str, size: str) -> str:
    return f"{task}-{cell}-{size}"


def finished(cfg: DictConfig, task: str, cell: str, size: str) -> bool:
    """A run is done when its dir holds results.json, or when it is shipped already (docs):
    a fresh machine has no outputs/, and shipped runs are not trained again."""
    name = run_name(task, cell, size)
    return any(
        (root / task / name / RESULTS_FILE).is_file() for root in (Path(cfg.out), Path(cfg.docs))
    )


def size_overrides(cfg: DictConfig, task: str, size: str, cell: str) -> list[str]:
    """The overrides of one run: its size's (``size_overrides.<task>.<size>``), then its
    cell's at that size (``size_overrides.<task>.<cell>-<size>``)."""
    table = cfg.get("size_overrides", {}).get(task, {})
    return [*(table.get(size) or []), *(table.get(f"{cell}-{size}") or [])]


def grid_commands(cfg: DictConfig) -> list[list[tuple[list[str], list[Path]]]]:
    """Groups of ``(command, results files it makes)``, one group per task and size, whose
    commands run side by side: one sweep over the cells not finished yet (``-m``, in parallel),
    or, where a cell has overrides of its own, one sweep per cell. Every run has a fixed dir so
    that a re-run resumes it."""
    return [size_commands(cfg, task, size) for task in cfg.tasks for size in cfg.sizes]


def size_commands(cfg: DictConfig, task: str, size: str) -> list[tuple[list[str], list[Path]]]:
    sweep_dir = Path(cfg.out) / task
    left = [c for c in cfg.cells if not finished(cfg, task, c, size)]
    cells = left or list(cfg.cells)  # (all finished: the command is shown as done)
    by_settings: dict[tuple[str, ...], list[str]] = {}
    for cell in cells:
        by_settings.setdefault(tuple(size_overrides(cfg, task, size, cell)), []).append(cell)
    commands = []
    for overrides, same in by_settings.items():
        made = [sweep_dir / run_name(task, c, size) / RESULTS_FILE for c in same if c in left]
        command = [
            *PYTHON,
            "experiments.train",
            "-m",
            f"+experiment={task}_grid",
            f"cell={','.join(same)}",
            f"size={size}",
            f"callbacks.timer.duration={cfg.budgets[task][size]}",
            *overrides,
            "hydra/launcher=parallel",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra.sweep.subdir=${task}-${cell}-${layers}x${units}",
            "callbacks.progress_bar=null",
            "trainer.enable_progress_bar=false",
        ]
        commands.append((command, made))
    return commands


def ship(cfg: DictConfig) -> list[str]:
    """Every finished run's weights into ``pretrained``; its results, config and an evaluation
    of the shipped weights (``experiments.evaluate``) into ``docs/<task>/<name>/``. Returns the
    shipped names."""
    from seqrnn.report import write_curve

    names = []
    for results_file in sorted(Path(cfg.out).glob("*/*/results.json")):
        run_dir = results_file.parent
        name = run_dir.name
        target = Path(cfg.docs) / run_dir.parent.name / name
        weights = Path(cfg.pretrained) / f"{name}.ckpt"
        evaluation = target / EVALUATION_FILE
        if not cfg.dry_run:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(results_file, target / RESULTS_FILE)
            for part in ("config.yaml", "overrides.yaml"):
                if (run_dir / ".hydra" / part).is_file():
                    shutil.copy2(run_dir / ".hydra" / part, target / part)
            write_curve(run_dir, target)  # the report's curves, without the run dir
        if not weights.is_file() or weights.stat().st_mtime < results_file.stat().st_mtime:
            export = [*PYTHON, "experiments.export", str(run_dir), "--to", str(cfg.pretrained)]
            execute(export, None, cfg.dry_run)
            evaluation.unlink(missing_ok=True)
        # the shipped numbers: re-computed from the shipped weights
        command = [*PYTHON, "experiments.evaluate", f"ckpt=pretrained:{name}"]
        evaluated = Path(cfg.out) / "evaluate" / name
        execute([*command, f"hydra.run.dir={evaluated}"], [evaluation], cfg.dry_run)
        if (evaluated / EVALUATION_FILE).is_file() and not evaluation.is_file():
            shutil.copy2(evaluated / EVALUATION_FILE, evaluation)
        names.append(name)
    return names


def best_classifier(cfg: DictConfig) -> str | None:
    """The shipped classifier with the highest test accuracy."""
    scores = {
        path.parent.name: json.loads(path.read_text()).get("test_acc", 0.0)
        for path in Path(cfg.docs).glob("classify/*/results.json")
    }
    return max(scores, key=scores.get) if scores else None


def study_commands(cfg: DictConfig, shipped: list[str]) -> list[tuple[list[str], Path, str]]:
    """``(command, the JSON it writes, the shipped model it reads)`` of each study, in its own
    dir under ``out``."""
    out = Path(cfg.out)
    commands = []
    if cfg.predictor in shipped:
        ckpt = f"ckpt=pretrained:{cfg.predictor}"
        done = out / "complete" / "completion.json"
        commands.append(
            (
                [*PYTHON, "experiments.complete", ckpt, f"hydra.run.dir={done.parent}"],
                done,
                cfg.predictor,
            )
        )
        for dataset in ("one_pixel", "two_by_two"):
            done = out / f"inpaint_{dataset}" / "inpaint.json"
            command = [*PYTHON, "experiments.inpaint", ckpt, f"dataset={dataset}"]
            commands.append(([*command, f"hydra.run.dir={done.parent}"], done, cfg.predictor))
    classifier = best_classifier(cfg)
    if classifier is not None:
        done = out / "analyze" / "analysis.json"
        command = [*PYTHON, "experiments.analyze", f"ckpt=pretrained:{classifier}"]
        commands.append(([*command, f"hydra.run.dir={done.parent}"], done, classifier))
    return commands


def made_from(done: Path, model: str) -> list[Path] | None:
    """``[done]`` (skip the study when it exists) unless ``done`` was made from another shipped
    model than ``model`` (a better classifier shipped since, or another predictor chosen):
    then None, and the study runs again."""
    if done.is_file():
        recorded = json.loads(done.read_text()).get("checkpoint", "")
        if Path(recorded).stem != model:
            return None
    return [done]


def execute_together(group: list[tuple[list[str], list[Path]]], dry_run: bool) -> None:
    """Run the commands of ``group`` side by side (each as :func:`execute` would), and wait."""
    if len(group) == 1:
        execute(*group[0], dry_run)
        return
    running = []
    for command, made in group:
        shown = " ".join(command[2:])
        if all(path.is_file() for path in made):
            print(f"done before: {shown}", flush=True)
            continue
        print(f"$ python -m {shown} &", flush=True)
        if not dry_run:
            running.append((command, subprocess.Popen(command)))
    for command, process in running:
        if process.wait() != 0:
            raise subprocess.CalledProcessError(process.returncode, command)


def execute(command: list[str], made: list[Path] | None, dry_run: bool) -> None:
    """Run ``command`` unless it made ``made`` before (``made=[]``: nothing left to make;
    ``None``: always run)."""
    shown = " ".join(command[2:])
    if made is not None and all(path.is_file() for path in made):
        print(f"done before: {shown}", flush=True)
        return
    print(f"$ python -m {shown}", flush=True)
    if not dry_run:
        subprocess.run(command, check=True)


def write_results(cfg: DictConfig) -> Path:
    """``docs/results.md``: each task's shipped runs beside the reference reports."""
    from seqrnn.report import comparison_table, read_shipped

    lines = [
        "# Results: the shipped models beside the reference reports",
        "",
        "Numbers re-computed from the shipped weights by `python -m experiments.evaluate "
        "ckpt=pretrained:<name>` (each run's `evaluation.json` here); epochs, training time and "
        "milestones from the run's `results.json`. Made by `make study`.",
    ]
    for task in ("classify", "predict"):
        shipped = read_shipped(cfg.docs, task)
        if shipped:
            lines += ["", f"## {task}", "", comparison_table(shipped, task)]
    path = Path(cfg.docs) / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(cfg: DictConfig) -> None:
    for group in grid_commands(cfg) if cfg.train else []:
        execute_together(group, cfg.dry_run)
    shipped = ship(cfg)
    print(f"shipped: {', '.join(shipped) or 'nothing yet'}", flush=True)
    # From what is shipped, not from the run dirs: on a machine that has not trained them all
    # (or any), the report still covers every shipped run.
    report = [*PYTHON, "experiments.report", str(cfg.docs), "--out", str(cfg.docs)]
    execute(report, None, cfg.dry_run)
    if shipped and not cfg.dry_run:
        print(f"results: {write_results(cfg)}", flush=True)
    for command, done, model in study_commands(cfg, shipped) if cfg.studies else []:
        execute(command, made_from(done, model), cfg.dry_run)
        study_dir = done.parent
        if study_dir.is_dir():  # the tables and figures that are shipped
            target = Path(cfg.docs) / study_dir.name
            shutil.copytree(
                study_dir,
                target,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("tensorboard", "*.npz", "*.log"),
            )


@hydra.main(version_base="1.3", config_path="../conf", config_name="study")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run(cfg)


if __name__ == "__main__":
    launch(main)
