"""The whole study: its plan on plain arguments (seqrnn.sweeps.study), and
`python -m experiments.study` printing the commands it runs, in order, and what it skips."""

import json

import pytest
from conftest import run_entry

from seqrnn.errors import ConfigError
from seqrnn.sweeps.study import StudyPlan, made_from, study_steps, training_steps

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


def test_each_size_is_a_group_of_its_cells_side_by_side_with_its_budget(tmp_path):
    groups = training_steps(plan_in(tmp_path, threads=2))
    assert len(groups) == 2 and all(len(group) == 2 for group in groups)
    (gru, _), (lstm, _) = groups[0]
    assert gru[1:4] == ["task=classify", "cell=gru", "size=1x128"] and "cell=lstm" in lstm
    assert "callbacks.timer.duration=00:03:00:00" in gru and "threads=2" in gru
    assert f"hydra.run.dir={tmp_path / 'runs' / 'classify' / 'classify-gru-1x128'}" in gru
    assert "callbacks.timer.duration=00:00:40:00" in groups[1][0][0]


def test_shipped_runs_are_not_trained_again_on_a_fresh_machine(tmp_path):
    shipped = tmp_path / "docs" / "classify" / "classify-gru-1x128"
    shipped.mkdir(parents=True)
    (shipped / "results.json").write_text(json.dumps({"test_acc": 0.99}))
    (gru, gru_makes), (lstm, lstm_makes) = training_steps(plan_in(tmp_path))[0]
    assert gru_makes == []  # nothing left to make: shown as done
    assert lstm_makes == [tmp_path / "runs" / "classify" / "classify-lstm-1x128" / "results.json"]


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
    assert lines[0].startswith("done before: experiments.train task=classify cell=gru size=1x32")
    assert lines[2].startswith("$ python -m experiments.train task=classify cell=gru size=1x64 ")
    assert lines[2].endswith(" &") and lines[3].endswith(" &")  # the two cells side by side
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
    longer of its shipped runs (both cells train side by side), so that `make study` trains
    every recipe to its end."""
    import yaml
    from conftest import PROJECT_ROOT

    plan = yaml.safe_load((PROJECT_ROOT / "conf" / "study.yaml").read_text())
    for task in plan["tasks"]:
        for size in plan["sizes"]:
            days, hours, minutes, seconds = map(int, plan["budgets"][task][size].split(":"))
            budget = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
            for cell in plan["cells"]:
                run = PROJECT_ROOT / "docs" / "results" / task / f"{task}-{cell}-{size}"
                took = json.loads((run / "results.json").read_text())["wall_seconds"]
                assert took <= budget, f"{task}-{cell}-{size} took {took:.0f} s > {budget} s"
