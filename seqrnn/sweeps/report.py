"""Tables and curves of many runs: every run dir below a folder, in the reference layout.

A run dir is one with ``.hydra/config.yaml`` (or a ``results.json``); a shipped run
(``docs/results/<task>/<name>/``) reads the same from its ``config.yaml``, ``results.json`` and
``curve.csv``, so the study's report is rebuilt from what is shipped, on any machine. A run's
status: ``done`` (it has ``results.json``), ``incomplete`` (a ``last.ckpt`` but no results:
stopped, or still running; a re-launched sweep resumes it) or ``failed`` (neither). Tables go by
task, cell and data (reading order, or the Bayesian process); columns are sizes. Runs that
differ only in their seed are replicates, shown as mean ± spread; runs whose recipes differ in
any other setting (learning rate, batch size, schedule, ...) are separate columns, labelled by
the settings that differ between them.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from seqrnn.data.datamodule import DEFAULT_PERMUTATION_SEED, describe_order
from seqrnn.data.dirichlet import describe
from seqrnn.layout import (
    CURVE_FILE,
    EVALUATION_FILE,
    LAST_CHECKPOINT,
    RESULTS_FILE,
    RUN_CONFIG,
    SHIPPED_CONFIG_FILE,
    TENSORBOARD_DIR,
)

REFERENCE_SIZES = ("1x32", "1x64", "1x128", "3x32")
# (results key, row title, format); accuracies only where a task has them.
ROWS = (
    ("test_loss", "test loss", "{:.4f}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("test_acc", "test accuracy", "{:.4f}"),
    ("val_acc", "val accuracy", "{:.4f}"),
    ("train_acc", "train accuracy", "{:.4f}"),
    ("test_kl", "test KL from Bayes", "{:.2e}"),
    ("test_bayes_loss", "Bayes test loss", "{:.4f}"),
    ("status", "ended by", "{}"),  # completed, early_stopped, time_budget, diverged
    ("epochs", "epochs", "{:.0f}"),
    ("wall_seconds", "wall time (s)", "{:.0f}"),
    ("params", "parameters", "{:.0f}"),
    # How many examples the losses and accuracies cover (fewer than the splits under a limit).
    ("train_examples", "train examples", "{:.0f}"),
    ("test_examples", "test examples", "{:.0f}"),
)


# Settings that do not tell two runs of one table column apart: where and how a run was kept
# and shown, what the table already separates (task, cell, size, data), and the seed (runs
# differing only in it are replicates); every other setting that differs labels its column.
# (What a recipe file may set, and a resumed run keeps, is experiments._cli.RECIPE_KEYS.) Dotted
# keys of the composed config; a key matches itself and what is below it.
NOT_TOLD_APART = (
    "task",
    "cell",
    "units",
    "layers",
    "seed",
    "threads",
    "resume",
    "skip_done",
    "paths",
    "hydra",
    "logger",
    "model._target_",
    "model._convert_",
    "model.cell",
    "model.units",
    "model.layers",
    "model.backend",
    "model.alpha",
    "model.period",
    "data._target_",
    "data.root",
    "data.download",
    "data.verify",
    "data.seed",
    "data.order",
    "data.permutation_seed",  # the table's data names it where it matters (permuted order)
    "data.eval_batch_size",
    "trainer._target_",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.enable_checkpointing",
    "trainer.log_every_n_steps",
    "callbacks.checkpoint",
    "callbacks.last_checkpoint",
    "callbacks.progress_bar",
    "callbacks.lr_monitor",
    "callbacks.milestones",
    "callbacks.divergence",
    "callbacks.share_cores",  # how many threads, not how it trains
    "callbacks.timer",  # a run's time budget: "ended by" says where one cut a run short
)


@dataclass
class Run:
    path: Path
    task: str
    cell: str
    size: str
    data: str
    status: str
    results: dict[str, Any] = field(default_factory=dict)
    # the recipe: flattened config settings that are not in NOT_TOLD_APART
    settings: dict[str, Any] = field(default_factory=dict)


def find_runs(root: str | Path) -> list[Run]:
    """Every run dir below ``root`` (``root`` itself included), sorted by path."""
    root = Path(root)
    dirs = {p.parent.parent for p in root.rglob(RUN_CONFIG)}
    dirs |= {p.parent for p in root.rglob(RESULTS_FILE)}
    return [run for run in (_read_run(d) for d in sorted(dirs)) if run is not None]


def _read_run(path: Path) -> Run | None:
    config_file = path / RUN_CONFIG
    if not config_file.is_file():
        config_file = path / SHIPPED_CONFIG_FILE
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    results_file = path / RESULTS_FILE
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for split, count in results.get("evaluated", {}).items():
        results[f"{split}_examples"] = count
    source = results or config
    if "task" not in source or "cell" not in source:
        return None  # not a training run (a completion or in-painting study)
    data = results.get("data") or _data_label(config.get("data") or {})
    if results:
        status = "done"
    elif (path / LAST_CHECKPOINT).is_file():
        status = "incomplete"
    else:
        status = "failed"
    size = f"{source['layers']}x{source['units']}"
    settings = {k: v for k, v in flatten(config).items() if not _excluded(k)}
    return Run(path, source["task"], source["cell"], size, data, status, results, settings)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"lr": 0.1}}`` -> ``{"model.lr": 0.1}`` (lists stay values)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _excluded(key: str) -> bool:
    # a class path says which code ran, not how it was set
    if key.endswith("_target_"):
        return True
    return any(key == k or key.startswith(f"{k}.") for k in NOT_TOLD_APART)


def recipe_labels(runs: list[Run]) -> dict[int, str]:
    """``{id(run): label}``: the settings in which ``runs`` differ, e.g. ``lr=0.003,
    batch_size=256`` (the last part of each dotted key, unless two keys share it). Empty
    labels when every run has the same recipe."""
    keys = sorted({k for run in runs for k in run.settings})
    differ = [k for k in keys if len({repr(run.settings.get(k)) for run in runs}) > 1]
    last = [k.rsplit(".", 1)[-1] for k in differ]
    names = [short if last.count(short) == 1 else k for k, short in zip(differ, last, strict=True)]
    return {
        id(run): ", ".join(
            f"{name}={_value_text(run.settings.get(k))}"
            for k, name in zip(differ, names, strict=True)
        )
        for run in runs
    }


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def _data_label(data: dict[str, Any]) -> str:
    """A run's data, described from its config (for runs that wrote no results)."""
    if "period" in data:
        return describe(data.get("alpha", []), data["period"], data.get("fixed_p"))
    seed = data.get("permutation_seed", DEFAULT_PERMUTATION_SEED)
    return describe_order(data.get("order", "pixel"), seed)


def _summary(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{fmt.format(mean)} ± {fmt.format(spread)} (n={len(values)})"


def tables(runs: list[Run]) -> dict[tuple[str, str, str], dict[str, list[Run]]]:
    """Runs by table ``(task, cell, data)``, then by column: a size (reference sizes first),
    split by recipe where runs of that size differ in more than their seed
    (``"1x32 (lr=0.003)"``). Each column's runs are replicates."""
    grouped: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run.task, run.cell, run.data)].append(run)
    ordered = {}
    for key in sorted(grouped):
        labels = {}
        for size in {run.size for run in grouped[key]}:
            labels |= recipe_labels([run for run in grouped[key] if run.size == size])
        columns: dict[tuple[int, str, str], list[Run]] = defaultdict(list)
        for run in grouped[key]:
            rank = REFERENCE_SIZES.index(run.size) if run.size in REFERENCE_SIZES else 99
            columns[(rank, run.size, labels[id(run)])].append(run)
        ordered[key] = {
            f"{size} ({label})" if label else size: columns[(rank, size, label)]
            for rank, size, label in sorted(columns)
        }
    return ordered


def milestone_rows(runs: list[Run]) -> list[tuple[str, str]]:
    """``(milestone key, row title)`` for every milestone some run recorded, e.g.
    ``("val/acc>=0.98", "minutes to val acc ≥ 0.98")``."""
    keys = dict.fromkeys(k for run in runs for k in run.results.get("milestones") or {})
    titles = []
    for key in keys:
        metric, op, threshold = re.match(r"(.+?)(>=|<=)(.+)", key).groups()
        sign = "≥" if op == ">=" else "≤"
        titles.append((key, f"minutes to {metric.replace('/', ' ')} {sign} {threshold}"))
    return titles


def milestone_text(runs: list[Run], key: str) -> str:
    """Minutes of training to a milestone (mean over replicates); "not reached" where no run
    reached it, "(k of n)" where only some did."""
    done = [r for r in runs if r.status == "done" and key in (r.results.get("milestones") or {})]
    minutes = [
        r.results["milestones"][key]["seconds"] / 60
        for r in done
        if r.results["milestones"][key] is not None
    ]
    if not done:
        return "–"
    if not minutes:
        return "not reached"
    text = _summary(minutes, "{:.1f}")
    return text if len(minutes) == len(done) else f"{text} ({len(minutes)} of {len(done)})"


def cell_text(runs: list[Run], key: str, fmt: str) -> str:
    """One table cell: the finished runs' value (mean ± spread), and what did not finish."""
    values = [r.results[key] for r in runs if r.status == "done" and key in r.results]
    if values and isinstance(values[0], str):  # words, such as how each run ended
        text = ", ".join(
            f"{values.count(v)} {v}" if len(values) > 1 else v for v in dict.fromkeys(values)
        )
    else:
        text = _summary(values, fmt) if values else ""
    unfinished = [r.status for r in runs if r.status != "done"]
    notes = ", ".join(
        f"{unfinished.count(s)} {s}" for s in ("incomplete", "failed") if s in unfinished
    )
    if notes:
        text = f"{text} ({notes})" if text else notes
    return text or "–"


def markdown_table(columns: dict[str, list[Run]]) -> str:
    """The table of one task, cell and data; a row only where some run has that number (no
    accuracy for the predictors, no KL for the images)."""
    runs = [run for group in columns.values() for run in group]
    present = [r for r in ROWS if any(r[0] in run.results for run in runs)]
    rows = present or ROWS[:2]
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for key, title, fmt in rows:
        cells = [cell_text(runs, key, fmt) for runs in columns.values()]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    for key, title in milestone_rows(runs):
        cells = [milestone_text(runs, key) for runs in columns.values()]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read_curve(path: Path) -> list[float] | None:
    """``val/loss`` per epoch of a run dir (its TensorBoard events) or of a shipped run (its
    ``curve.csv``); None if it has neither."""
    if (path / TENSORBOARD_DIR).is_dir():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        logging.getLogger("tensorboard").setLevel(logging.WARNING)  # a line per file read
        events = EventAccumulator(str(path / TENSORBOARD_DIR), size_guidance={"scalars": 0})
        events.Reload()
        if "val/loss" not in events.Tags().get("scalars", []):
            return None
        return [e.value for e in events.Scalars("val/loss")]
    if (path / CURVE_FILE).is_file():
        with (path / CURVE_FILE).open() as f:
            return [float(row["val_loss"]) for row in csv.DictReader(f)]
    return None


def write_curve(run_dir: str | Path, to: str | Path) -> Path | None:
    """A run's validation curve as ``<to>/curve.csv`` (epoch, val_loss), for shipping; None if
    the run has none."""
    values = read_curve(Path(run_dir))
    if values is None:
        return None
    path = Path(to) / CURVE_FILE
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "val_loss"])
        writer.writerows((epoch, f"{value:.6g}") for epoch, value in enumerate(values, 1))
    return path


def validation_curves(
    columns: dict[str, list[Run]], title: str, curves: dict[Path, list[float] | None]
) -> Figure:
    """``val/loss`` per epoch of every run of a table that has a curve (``curves``: read_curve
    of each run's path)."""
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    for size, runs in columns.items():
        for i, run in enumerate(runs):
            values = curves[run.path]
            if values is None:
                continue
            label = size if len(runs) == 1 else f"{size} #{i + 1}"  # size: a column title
            style = "-" if run.status == "done" else "--"
            ax.plot(range(1, len(values) + 1), values, style, marker="o", ms=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss")
    ax.set_title(title, fontsize=10)
    if ax.lines:
        ax.legend(fontsize=8)
    return fig


def _csv_key(key: str) -> str:
    return "ended_by" if key == "status" else key


def write_report(root: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Collect the runs below ``root``; write ``report.md``, ``report.csv`` and one curves PNG
    per table into ``out_dir`` (default ``root``). Returns the written paths by kind."""
    root = Path(root)
    out_dir = Path(out_dir) if out_dir is not None else root
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = find_runs(root)
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "incomplete", "failed")}
    lines = [
        f"# Report: {root}",
        "",
        f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ". "
        "Losses in nats: per example (classify), per pixel (predict), per symbol (dirichlet). "
        "Several runs of one configuration: mean ± standard deviation (n).",
    ]
    written = {"markdown": out_dir / "report.md", "csv": out_dir / "report.csv"}
    csv_rows = []
    for (task, cell, data), columns in tables(runs).items():
        name = f"{task}_{cell}_" + re.sub(r"[^A-Za-z0-9.]+", "_", data).strip("_")
        figure_path = out_dir / f"curves_{name}.png"
        lines += ["", f"## {task}: {cell.upper()}, {data}", "", markdown_table(columns), ""]
        # Runs shipped before their curves were: a figure without them would replace one that
        # has them, so an existing figure stays as it was drawn, and says so.
        curves = {run.path: read_curve(run.path) for group in columns.values() for run in group}
        uncurved = [path.name for path, values in curves.items() if values is None]
        if uncurved and figure_path.is_file():
            lines.append(
                "The figure was drawn from the run dirs when all of them were at hand; no curve "
                f"is shipped for {', '.join(uncurved)}, so it is not redrawn, and a run shipped "
                "since is not in it."
            )
            lines.append("")
        else:
            figure = validation_curves(columns, f"{task}, {cell.upper()}, {data}", curves)
            figure.savefig(figure_path, dpi=100)
            written[f"curves_{name}"] = figure_path
        lines.append(f"![validation curves](curves_{name}.png)")
        for size, group in columns.items():
            for run in group:
                csv_rows.append(
                    {
                        "task": task,
                        "cell": cell,
                        "data": data,
                        "size": run.size,
                        "column": size,  # the size and, where recipes differ, the recipe
                        "status": run.status,
                        "run": str(run.path),
                        # (how the run ended goes in "ended_by": "status" is the run dir's)
                        **{_csv_key(key): run.results.get(key, "") for key, _, _ in ROWS},
                        **{
                            f"seconds_to_{key}": (at or {}).get("seconds", "")
                            for key, at in (run.results.get("milestones") or {}).items()
                        },
                    }
                )
    if not runs:
        lines += ["", "No runs found."]
    written["markdown"].write_text("\n".join(lines) + "\n")
    with written["csv"].open("w", newline="") as f:
        fields = ["task", "cell", "data", "size", "column", "status"]
        fields += [_csv_key(k) for k, _, _ in ROWS]
        fields += list(dict.fromkeys(k for row in csv_rows for k in row if k not in fields))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(csv_rows)
    return written


# Best test result of the reference reports per configuration, pixel order: classifier test
# accuracy and predictor test cross-entropy (nats/pixel); None where they report none.
REFERENCE = {
    "classify": {
        "gru-1x32": 0.9747,
        "gru-1x64": 0.9647,
        "gru-1x128": 0.9800,
        "gru-3x32": 0.9871,
        "lstm-1x32": 0.9165,
        "lstm-1x64": 0.9354,
        "lstm-1x128": 0.9353,
        "lstm-3x32": 0.8221,
    },
    "predict": {"gru-1x32": 0.0954, "gru-1x64": 0.0963, "gru-1x128": 0.0819, "gru-3x32": 0.0906},
}


def comparison_table(shipped: dict[str, dict[str, Any]], task: str) -> str:
    """A markdown table of the shipped runs of ``task`` beside the reference reports.

    ``shipped`` maps ``<cell>-<layers>x<units>`` to ``{"evaluation": ..., "results": ...}``:
    the numbers re-computed from the shipped weights (``evaluation.json``) and the training
    record (``results.json``: epochs, time, milestones). What is compared is the task's
    ``comparison`` (seqrnn.models.TASKS); a task without reference reports shows "–" there.
    """
    from seqrnn.models import TASKS

    compared = TASKS[task].comparison
    key, title, higher, milestone = (
        compared.metric,
        compared.title,
        compared.higher_is_better,
        compared.milestone,
    )
    reference = REFERENCE.get(task, {})
    lines = [
        f"| config | {title} | reference | better than it | epochs | training minutes | "
        f"minutes to {milestone} |",
        "|---|---:|---:|:-:|---:|---:|---:|",
    ]
    order = [f"{c}-{s}" for c in ("gru", "lstm") for s in REFERENCE_SIZES]
    for config in [c for c in order if c in shipped] + sorted(set(shipped) - set(order)):
        evaluation, results = shipped[config]["evaluation"], shipped[config]["results"]
        value, ref = evaluation[key], reference.get(config)
        ref_text = "–" if ref is None else f"{ref:.4f}"
        # the reports trained no LSTM predictor: such a row is held to the GRU of its size
        size = config.split("-", 1)[1]
        if ref is None and reference.get(f"gru-{size}") is not None:
            ref = reference[f"gru-{size}"]
            ref_text = f"GRU: {ref:.4f}"
        better = (
            "–" if ref is None else ("yes" if (value > ref if higher else value < ref) else "no")
        )
        reached = (results.get("milestones") or {}).get(milestone)
        reached_text = "not reached" if reached is None else f"{reached['seconds'] / 60:.1f}"
        lines.append(
            f"| {_config_title(config)} | {value:.4f} | {ref_text} | {better} | "
            f"{results.get('epochs', '–')} | {results.get('wall_seconds', 0) / 60:.0f} | "
            f"{reached_text} |"
        )
    return "\n".join(lines)


def _config_title(config: str) -> str:
    """``gru-1x32`` -> ``GRU 1x32``."""
    cell, size = config.split("-", 1)
    return f"{cell.upper()} {size}"


def read_shipped(docs: str | Path, task: str) -> dict[str, dict[str, Any]]:
    """``{<cell>-<size>: {"evaluation", "results"}}`` of ``docs/<task>/<task>-<cell>-<size>/``:
    the pixel-order runs, which the reference reports trained (a run of another reading order,
    ``<task>-<cell>-<size>-permuted``, is compared with the papers of its own benchmark:
    docs/results/published.md)."""
    shipped = {}
    for folder in sorted(Path(docs).glob(f"{task}/{task}-*")):
        pixel_order = folder.name.count("-") == 2
        if (
            pixel_order
            and (folder / EVALUATION_FILE).is_file()
            and (folder / RESULTS_FILE).is_file()
        ):
            shipped[folder.name.removeprefix(f"{task}-")] = {
                "evaluation": json.loads((folder / EVALUATION_FILE).read_text()),
                "results": json.loads((folder / RESULTS_FILE).read_text()),
            }
    return shipped
