"""The whole study: its plan on plain arguments (seqrnn.sweeps.study), and
`python -m experiments.study` printing the commands it runs, in order, and what it skips."""

import json
import subprocess
import sys

import pytest
from conftest import run_entry

from seqrnn.errors import ConfigError
from seqrnn.sweeps.study import (
    Runner,
    StudyPlan,
    budget_seconds,
    made_from,
    queue_hours,
    study_steps,
    training_steps,
)

BUDGETS = {"classify": {"1x32": "00:00:40:00", "1x128": "00:03:00:00"}}


def plan_in(tmp_path, **kwargs) -> StudyPlan:
    settings = {
        "tasks": ["classify"],
        "cells": ["gru", "lstm"],
        "sizes": ["1x128", "1x32"],
        "budgets": BUDGETS,
        "out": tmp_path / "runs",
        "docs": tmp_path / "docs",
        "pretrained": tmp_path / "pretrained",
    }
    return StudyPlan(**{**settings, **kwargs})


def test_runs_queue_longest_budget_first_each_with_its_budget(tmp_path):
    steps = training_steps(plan_in(tmp_path, sizes=["1x32", "1x128"], threads=2))
    assert [command[2:4] for command, _ in steps] == [
        ["cell=gru", "size=1x128"],  # the 3-hour budget first, though the plan lists it second
        ["cell=lstm", "size=1x128"],
        ["cell=gru", "size=1x32"],
        ["cell=lstm", "size=1x32"],
    ]
    gru = steps[0][0]
    assert gru[1:4] == ["task=classify", "cell=gru", "size=1x128"]
    assert "callbacks.timer.duration=00:03:00:00" in gru and "threads=2" in gru
    assert f"hydra.run.dir={tmp_path / 'runs' / 'classify' / 'classify-gru-1x128'}" in gru
    assert "callbacks.timer.duration=00:00:40:00" in steps[2][0]


def test_shipped_runs_are_not_trained_again_on_a_fresh_machine(tmp_path):
    shipped = tmp_path / "docs" / "classify" / "classify-gru-1x128"
    shipped.mkdir(parents=True)
    (shipped / "results.json").write_text(json.dumps({"test_acc": 0.99}))
    (gru, gru_makes), (lstm, lstm_makes) = training_steps(plan_in(tmp_path))[:2]
    assert gru_makes == []  # nothing left to make: shown as done
    assert lstm_makes == [tmp_path / "runs" / "classify" / "classify-lstm-1x128" / "results.json"]


def logging_step(log, name: str, seconds: float, status: int = 0):
    """A step of real processes (``python -c``): logs its start and end into ``log``."""
    code = (
        "import sys, time; log = open(sys.argv[1], 'a'); log.write('start ' + sys.argv[2] + '\\n');"
        "log.flush(); time.sleep(float(sys.argv[3])); log.write('end ' + sys.argv[2] + '\\n');"
        "sys.exit(int(sys.argv[4]))"
    )
    return [code, str(log), name, str(seconds), str(status)], [log.parent / f"{name}.never"]


def test_the_queue_runs_workers_at_a_time_and_starts_the_next_when_one_ends(tmp_path):
    log = tmp_path / "log"
    runner = Runner(plan_in(tmp_path, python=[sys.executable, "-c"]))
    long, short, gap_filler = (("long", 3.0), ("short", 0.1), ("next", 0.1))
    runner.queue([logging_step(log, *step) for step in (long, short, gap_filler)], workers=2)
    # the third started when the short one ended, not when the long one beside it ended
    lines = log.read_text().split("\n")[:-1]
    assert sorted(lines[:2]) == ["start long", "start short"]  # both at once, in either order
    assert lines[2:] == ["end short", "start next", "end next", "end long"]


def test_queue_hours_counts_the_free_worker_first_and_the_order_matters():
    hour = 3600.0
    assert queue_hours([3 * hour, hour, hour, hour], workers=2) == 3.0  # longest first
    assert queue_hours([hour, hour, 3 * hour], workers=2) == 4.0  # the long one last waits
    assert queue_hours([hour, hour, 3 * hour], workers=1) == 5.0


def test_after_a_failed_run_none_starts_and_the_running_one_finishes(tmp_path):
    log = tmp_path / "log"
    runner = Runner(plan_in(tmp_path, python=[sys.executable, "-c"]))
    steps = [logging_step(log, "long", 2.0), logging_step(log, "bad", 0.0, status=3)]
    steps.append(logging_step(log, "later", 0.0))
    with pytest.raises(subprocess.CalledProcessError) as failed:
        runner.queue(steps, workers=2)
    assert failed.value.returncode == 3 and "bad" in failed.value.cmd
    lines = log.read_text().split("\n")[:-1]
    assert "end long" in lines and lines[-1] == "end long"  # its work was not cut
    assert "start later" not in lines


def test_a_size_without_a_budget_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"sizes: '9x9' has no time budget .* 1x32, 1x128"):
        training_steps(plan_in(tmp_path, sizes=["9x9"]))


def test_the_state_analysis_runs_again_when_a_better_classifier_is_shipped(tmp_path):
    for name, acc in (("classify-gru-1x32", 0.97), ("classify-lstm-1x64", 0.98)):
        shipped = tmp_path / "docs" / "classify" / name
        shipped.mkdir(parents=True)
        (shipped / "results.json").write_text(json.dumps({"test_acc": acc}))
    ((command, done, model),) = study_steps(plan_in(tmp_path), shipped=[])
    assert command[:2] == ["experiments.analyze", "ckpt=pretrained:classify-lstm-1x64"]
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"checkpoint": "/somewhere/classify-lstm-1x64.ckpt"}))
    assert made_from(done, model) == [done]  # made from the best shipped classifier: done
    done.write_text(json.dumps({"checkpoint": "/somewhere/classify-gru-1x32.ckpt"}))
    assert made_from(done, model) is None  # from another one: made again


def test_completion_and_inpainting_follow_the_chosen_predictor(tmp_path):
    steps = study_steps(plan_in(tmp_path, predictor="predict-lstm-1x32"), ["predict-lstm-1x32"])
    assert [command[0] for command, _, _ in steps] == [
        "experiments.complete",
        *["experiments.inpaint"] * 2,
    ]
    assert all(model == "predict-lstm-1x32" for _, _, model in steps)


def test_dry_run_prints_every_command_and_writes_nothing(tmp_path):
    runs = tmp_path / "runs" / "classify"
    for cell in ("gru", "lstm"):
        run = runs / f"classify-{cell}-1x32"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"test_acc": 0.9}))
    result = run_entry(
        "study",
        "dry_run=true",
        f"out={tmp_path / 'runs'}",
        f"docs={tmp_path / 'docs'}",
        f"pretrained={tmp_path / 'pretrained'}",
        "tasks=[classify]",
        "sizes=[1x32,1x64]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # nothing shipped in docs: each run counts at its budget, 2 x 1 h then 2 x 40 min; the
    # two 1x32 runs are done, so the two 1x64 runs are left, side by side
    assert lines.pop(0) == (
        "to train: 2 of 4 runs, 1.0 h; the whole plan, at the shipped runs' times, 2 at a "
        "time: 1.7 h in one queue (3.3 one-worker hours)"
    )
    # the 1-hour budgets (1x64) queue before the 40-minute ones (1x32), which are done
    assert lines[0].startswith("$ python -m experiments.train task=classify cell=gru size=1x64 ")
    assert lines[0].endswith(" &") and lines[1].endswith(" &")  # two workers: both at once
    assert lines[2].startswith("done before: experiments.train task=classify cell=gru size=1x32")
    assert sum("experiments.export" in line for line in lines) == 2
    evaluations = [line for line in lines if "experiments.evaluate" in line]
    assert len(evaluations) == 2 and "ckpt=pretrained:classify-gru-1x32" in evaluations[0]
    assert "shipped: classify-gru-1x32, classify-lstm-1x32" in result.stdout
    assert not (tmp_path / "docs").exists() and not (tmp_path / "pretrained").exists()


def test_a_size_without_a_budget_fails_in_one_line():
    result = run_entry("study", "sizes=[custom]", "dry_run=true")  # a size, not in budgets
    assert result.returncode == 2
    assert result.stderr.startswith("error: sizes: 'custom' has no time budget")
    assert result.stderr.count("\n") == 1


def test_no_budget_of_the_plan_cuts_a_shipped_runs_recipe_short():
    """conf/study.yaml's budget of each task and size is at least the training time of the
    longer of its shipped runs, so that `make study` trains every recipe to its end."""
    import yaml
    from conftest import PROJECT_ROOT

    plan = yaml.safe_load((PROJECT_ROOT / "conf" / "study.yaml").read_text())
    for task in plan["tasks"]:
        for size in plan["sizes"]:
            budget = budget_seconds(plan["budgets"][task][size])
            for cell in plan["cells"]:
                run = PROJECT_ROOT / "docs" / "results" / task / f"{task}-{cell}-{size}"
                took = json.loads((run / "results.json").read_text())["wall_seconds"]
                assert took <= budget, f"{task}-{cell}-{size} took {took:.0f} s > {budget} s"
