"""The whole study, resumable: its plan (which runs, their time budgets and threads, in which
order), the commands that carry it out, and the shipping of what finished.

Each step is one of the documented commands (``experiments.train``, ``experiments.export``,
``experiments.evaluate``, ``experiments.report``, ``experiments.complete``,
``experiments.inpaint``, ``experiments.analyze``), printed before it runs, so that every shipped
number can be made again by hand; a step whose output exists is skipped. How a run trains is its
recipe (``conf/recipe``): a training step is the plain ``experiments.train task=T cell=C size=S``
plus only its time budget, its threads, its run dir and a progress display for logs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqrnn.errors import ConfigError
from seqrnn.layout import (
    ANALYSIS_FILE,
    COMPLETION_FILE,
    EVALUATION_FILE,
    INPAINT_FILE,
    RESULTS_FILE,
    RUN_CONFIG,
    RUN_OVERRIDES,
    TENSORBOARD_DIR,
    entry_command,
    run_name,
)

# (command as `python -m` arguments, the files it makes: it is done when they all exist)
Step = tuple[list[str], list[Path]]


@dataclass(frozen=True)
class StudyPlan:
    """What ``experiments.study`` does, as plain values (``conf/study.yaml`` documents each).

    ``budgets[task][size]`` is a run's training time ("DD:HH:MM:SS"); ``workers`` runs train at
    a time, ``threads`` each, the longest budgets first.
    """

    tasks: Sequence[str]
    cells: Sequence[str]
    sizes: Sequence[str]
    budgets: dict[str, dict[str, str]]
    out: Path
    docs: Path
    pretrained: Path
    predictor: str = "predict-gru-1x128"
    threads: int = 1
    workers: int = 2
    train: bool = True
    studies: bool = True
    dry_run: bool = False
    python: list[str] = field(default_factory=lambda: [sys.executable, "-m"])

    def run_dir(self, task: str, cell: str, size: str) -> Path:
        return self.out / task / run_name(task, cell, size)

    def finished(self, task: str, cell: str, size: str) -> bool:
        """Done when its run dir holds results.json, or when it is shipped already (docs): a
        fresh machine has no outputs/, and shipped runs are not trained again."""
        name = run_name(task, cell, size)
        return any((root / task / name / RESULTS_FILE).is_file() for root in (self.out, self.docs))


def run_budget(plan: StudyPlan, task: str, size: str) -> str:
    """The training time budget of ``task``'s runs of ``size``, "DD:HH:MM:SS"."""
    if size not in plan.budgets.get(task, {}):
        known = ", ".join(plan.budgets.get(task, {})) or "none"
        raise ConfigError(
            f"sizes: {size!r} has no time budget for task {task} in budgets.{task}; "
            f"sizes with one: {known}"
        )
    budget = str(plan.budgets[task][size])
    if not re.fullmatch(r"\d+:\d\d:\d\d:\d\d", budget):
        raise ConfigError(
            f"budgets.{task}.{size}={budget!r} is not allowed; give days:hours:minutes:seconds, "
            "e.g. 00:01:30:00"
        )
    return budget


def train_command(plan: StudyPlan, task: str, cell: str, size: str) -> list[str]:
    """The plain command of one run, plus its budget, threads, run dir and plain-line logs."""
    return entry_command(
        "train",
        f"task={task}",
        f"cell={cell}",
        f"size={size}",
        f"callbacks.timer.duration={run_budget(plan, task, size)}",
        f"threads={plan.threads}",
        f"hydra.run.dir={plan.run_dir(task, cell, size)}",
        "trainer.enable_progress_bar=false",
    )


def budget_seconds(budget: str) -> int:
    """``"DD:HH:MM:SS"`` (Lightning's Timer format, checked by :func:`run_budget`) in seconds."""
    days, hours, minutes, seconds = map(int, budget.split(":"))
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def queued_runs(plan: StudyPlan) -> list[tuple[str, str, str]]:
    """``(task, cell, size)`` of every run of the plan, longest budget first (the plan's order
    among equal budgets).

    Longest first because ``workers`` runs share the machine as a queue: the long runs start
    at once and the short ones fill the gaps, instead of a short run's worker idling until the
    long run beside it ends (the grids' wall time, docs/sweeps.md).
    """
    runs = [(task, cell, size) for task in plan.tasks for size in plan.sizes for cell in plan.cells]
    # sorted() is stable: equal budgets keep the plan's order
    return sorted(runs, key=lambda run: -budget_seconds(run_budget(plan, run[0], run[2])))


def training_steps(plan: StudyPlan) -> list[Step]:
    """The training step of every run, in the queue's order (:func:`queued_runs`)."""
    steps = []
    for task, cell, size in queued_runs(plan):
        made = plan.run_dir(task, cell, size) / RESULTS_FILE
        done = [] if plan.finished(task, cell, size) else [made]
        steps.append((train_command(plan, task, cell, size), done))
    return steps


def queue_hours(seconds: Sequence[float], workers: int) -> float:
    """Wall hours of runs taking ``seconds`` each, in this order, ``workers`` at a time: each
    starts on the worker that is free first (as :meth:`Runner.queue` runs them)."""
    free = [0.0] * workers
    for took in seconds:
        free[free.index(min(free))] += took
    return max(free) / 3600


def wall_time_line(plan: StudyPlan) -> str:
    """What is left to train and its wall time, then the whole plan's, each run at its shipped
    run's ``wall_seconds`` (its budget when none is shipped), for both grids in one queue and
    for each grid alone."""
    times = {}
    for task, cell, size in queued_runs(plan):
        shipped = plan.docs / task / run_name(task, cell, size) / RESULTS_FILE
        took = json.loads(shipped.read_text()).get("wall_seconds") if shipped.is_file() else None
        times[task, cell, size] = took or budget_seconds(plan.budgets[task][size])
    parts = [f"{queue_hours(list(times.values()), plan.workers):.1f} h in one queue"]
    if len(plan.tasks) > 1:
        for task in plan.tasks:
            alone = [took for key, took in times.items() if key[0] == task]
            parts.append(f"{task} alone {queue_hours(alone, plan.workers):.1f} h")
    left = [key for key in times if not plan.finished(*key)]
    if left:
        hours = queue_hours([times[key] for key in left], plan.workers)
        todo = f"to train: {len(left)} of {len(times)} runs, {hours:.1f} h"
    else:
        todo = f"to train: nothing, all {len(times)} runs are done or shipped ({plan.docs})"
    return (
        f"{todo}; the whole plan, at the shipped runs' times, {plan.workers} at a time: "
        f"{', '.join(parts)} ({sum(times.values()) / 3600:.1f} one-worker hours)"
    )


def best_classifier(docs: Path) -> str | None:
    """The shipped classifier with the highest test accuracy."""
    scores = {
        path.parent.name: json.loads(path.read_text()).get("test_acc", 0.0)
        for path in docs.glob("classify/*/" + RESULTS_FILE)
    }
    return max(scores, key=scores.get) if scores else None


def study_steps(plan: StudyPlan, shipped: Sequence[str]) -> list[tuple[list[str], Path, str]]:
    """``(command, the JSON it writes, the shipped model it reads)`` of each study of trained
    models, each in its own dir under ``out``."""
    commands = []
    if plan.predictor in shipped:
        ckpt = f"ckpt=pretrained:{plan.predictor}"
        done = plan.out / "complete" / COMPLETION_FILE
        command = entry_command("complete", ckpt, f"hydra.run.dir={done.parent}")
        commands.append((command, done, plan.predictor))
        for dataset in ("one_pixel", "two_by_two"):
            done = plan.out / f"inpaint_{dataset}" / INPAINT_FILE
            command = entry_command("inpaint", ckpt, f"dataset={dataset}")
            commands.append(([*command, f"hydra.run.dir={done.parent}"], done, plan.predictor))
    classifier = best_classifier(plan.docs)
    if classifier is not None:
        done = plan.out / "analyze" / ANALYSIS_FILE
        command = entry_command("analyze", f"ckpt=pretrained:{classifier}")
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


class Runner:
    """Prints and runs the study's commands (``python -m <command>``), or only prints them."""

    def __init__(self, plan: StudyPlan) -> None:
        self.plan = plan

    def one(self, command: list[str], made: list[Path] | None) -> None:
        """Run ``command`` unless it made ``made`` before (``made=[]``: nothing left to make;
        ``None``: always run)."""
        shown = " ".join(command)
        if made is not None and all(path.is_file() for path in made):
            print(f"done before: {shown}", flush=True)
            return
        print(f"$ python -m {shown}", flush=True)
        if not self.plan.dry_run:
            subprocess.run([*self.plan.python, *command], check=True)

    def queue(self, steps: list[Step], workers: int) -> None:
        """Run ``steps`` (each as :meth:`one` would), ``workers`` at a time in the given order:
        the next starts when one ends. After a failure none starts; the running ones finish
        (their work is kept) before the error is raised."""
        running: list[tuple[list[str], subprocess.Popen]] = []
        failed = None
        for command, made in steps:
            shown = " ".join(command)
            if all(path.is_file() for path in made):
                print(f"done before: {shown}", flush=True)
                continue
            while len(running) >= workers and failed is None:
                failed = self._wait_for_one(running)
            if failed is not None:
                break
            print(f"$ python -m {shown} &", flush=True)
            if not self.plan.dry_run:
                running.append((command, subprocess.Popen([*self.plan.python, *command])))
        while running:
            error = self._wait_for_one(running)
            failed = failed or error  # the first failure is the one raised
        if failed is not None:
            raise failed

    @staticmethod
    def _wait_for_one(running: list[tuple[list[str], subprocess.Popen]]):
        """Wait until one of ``running`` ends and remove it; its error, if it failed."""
        while True:
            for item in running:
                command, process = item
                if process.poll() is not None:
                    running.remove(item)
                    if process.returncode != 0:
                        return subprocess.CalledProcessError(process.returncode, command)
                    return None
            time.sleep(0.5)


def ship(plan: StudyPlan, runner: Runner) -> list[str]:
    """Every finished run's weights into ``pretrained``; its results, config, validation curve
    and an evaluation of the shipped weights (``experiments.evaluate``) into
    ``docs/<task>/<name>/``. Returns the shipped names."""
    from seqrnn.sweeps.report import write_curve

    names = []
    for results_file in sorted(plan.out.glob(f"*/*/{RESULTS_FILE}")):
        run_dir = results_file.parent
        name = run_dir.name
        target = plan.docs / run_dir.parent.name / name
        weights = plan.pretrained / f"{name}.ckpt"
        evaluation = target / EVALUATION_FILE
        if not plan.dry_run:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(results_file, target / RESULTS_FILE)
            for part in (RUN_CONFIG, RUN_OVERRIDES):
                if (run_dir / part).is_file():
                    shutil.copy2(run_dir / part, target / Path(part).name)
            write_curve(run_dir, target)  # the report's curves, without the run dir
        if not weights.is_file() or weights.stat().st_mtime < results_file.stat().st_mtime:
            # newer weights than the shipped ones, trained by this study: replace them
            export = entry_command("export", str(run_dir), "--to", str(plan.pretrained), "--force")
            runner.one(export, None)
            evaluation.unlink(missing_ok=True)
        # the shipped numbers: re-computed from the shipped weights
        evaluated = plan.out / "evaluate" / name
        command = entry_command("evaluate", f"ckpt=pretrained:{name}", f"hydra.run.dir={evaluated}")
        runner.one(command, [evaluation])
        if (evaluated / EVALUATION_FILE).is_file() and not evaluation.is_file():
            shutil.copy2(evaluated / EVALUATION_FILE, evaluation)
        names.append(name)
    return names


def write_results(docs: Path) -> Path:
    """``docs/results.md``: each task's shipped runs beside the reference reports."""
    from seqrnn.models import TASKS
    from seqrnn.sweeps.report import comparison_table, read_shipped

    lines = [
        "# Results: the shipped models beside the reference reports",
        "",
        "Numbers re-computed from the shipped weights by `python -m experiments.evaluate "
        "ckpt=pretrained:<name>` (each run's `evaluation.json` here); epochs, training time and "
        "milestones from the run's `results.json`. Made by `make study`.",
    ]
    for task in [name for name, model in TASKS.items() if model.comparison is not None]:
        shipped = read_shipped(docs, task)
        if shipped:
            lines += ["", f"## {task}", "", comparison_table(shipped, task)]
    path = docs / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_whole_study(plan: StudyPlan) -> None:
    """Train what is left, ship what finished, report from what is shipped, then the studies."""
    runner = Runner(plan)
    if plan.train and plan.dry_run:
        print(wall_time_line(plan), flush=True)
    if plan.train:
        runner.queue(training_steps(plan), plan.workers)
    shipped = ship(plan, runner)
    if shipped:
        print(f"shipped: {', '.join(shipped)}", flush=True)
    else:
        print(
            f"shipped: nothing new (no run in {plan.out} has finished; {plan.docs} and "
            f"{plan.pretrained} keep what was shipped before)",
            flush=True,
        )
    # From what is shipped, not from the run dirs: on a machine that has not trained them all
    # (or any), the report still covers every shipped run.
    runner.one(entry_command("report", str(plan.docs), "--out", str(plan.docs)), None)
    if shipped and not plan.dry_run:
        print(f"results: {write_results(plan.docs)}", flush=True)
    for command, done, model in study_steps(plan, shipped) if plan.studies else []:
        runner.one(command, made_from(done, model))
        study_dir = done.parent
        if study_dir.is_dir() and not plan.dry_run:  # the tables and figures that are shipped
            shutil.copytree(
                study_dir,
                plan.docs / study_dir.name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns(TENSORBOARD_DIR, "*.npz", "*.log"),
            )
