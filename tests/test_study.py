"""`python -m experiments.study`: the commands it runs, in order, and what it skips."""

import json

from conftest import run_entry


def test_dry_run_lists_each_grid_sweep_with_its_budget(tmp_path):
    result = run_entry(
        "study",
        "dry_run=true",
        f"out={tmp_path / 'runs'}",
        f"docs={tmp_path / 'docs'}",
        "tasks=[classify,predict]",
        "sizes=[1x32,1x128]",
        'budgets.predict={1x32: "00:00:40:00", 1x128: "00:03:00:00"}',
        'budgets.classify={1x32: "00:00:40:00"}',
        'size_overrides={classify: {1x128: ["trainer.max_epochs=7", "model.lr=0.004"],'
        ' lstm-1x128: ["trainer.max_epochs=9"]}}',
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweeps = [line for line in result.stdout.splitlines() if "experiments.train -m" in line]
    # an LSTM with settings of its own (the classifier's 1x128 here, the predictor's 1x32 and
    # 1x128 in conf/study.yaml) trains in a sweep of its own beside the GRU's
    assert len(sweeps) == 7
    assert "+experiment=classify_grid cell=gru,lstm size=1x32 " in sweeps[0]
    assert "callbacks.timer.duration=00:00:40:00" in sweeps[0]
    assert "+experiment=classify_grid cell=gru size=1x128 " in sweeps[1]
    assert "+experiment=classify_grid cell=lstm size=1x128 " in sweeps[2]
    assert "trainer.max_epochs=7 model.lr=0.004 hydra/launcher" in sweeps[1]  # the size's
    # the cell's after the size's
    assert "trainer.max_epochs=7 model.lr=0.004 trainer.max_epochs=9 hydra/launcher" in sweeps[2]
    assert "+experiment=predict_grid cell=gru size=1x32 " in sweeps[3]
    assert "+experiment=predict_grid cell=lstm size=1x32 " in sweeps[4]
    assert "+experiment=predict_grid cell=gru size=1x128 " in sweeps[5]
    assert "+experiment=predict_grid cell=lstm size=1x128 " in sweeps[6]
    assert all("callbacks.timer.duration=00:03:00:00" in line for line in sweeps[5:])
    assert all("hydra/launcher=parallel" in line for line in sweeps)
    assert "trainer.max_epochs=7" not in sweeps[0] + sweeps[3] + sweeps[5]
    assert "shipped: nothing yet" in result.stdout
    assert not (tmp_path / "docs").exists()  # a dry run writes nothing


def test_finished_runs_are_skipped_and_shipped(tmp_path):
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
        "sizes=[1x32]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("done before: experiments.train -m +experiment=classify_grid")
    exports = [line for line in lines if "experiments.export" in line]
    evaluations = [line for line in lines if "experiments.evaluate" in line]
    assert len(exports) == 2 and len(evaluations) == 2
    assert "ckpt=pretrained:classify-gru-1x32" in evaluations[0]
    assert "shipped: classify-gru-1x32, classify-lstm-1x32" in result.stdout
    ship_only = run_entry(
        "study",
        "dry_run=true",
        "train=false",
        f"out={tmp_path / 'runs'}",
        f"docs={tmp_path / 'docs'}",
        f"pretrained={tmp_path / 'pretrained'}",
    )
    assert ship_only.returncode == 0, ship_only.stderr[-3000:]
    assert "experiments.train" not in ship_only.stdout
    assert "shipped: classify-gru-1x32, classify-lstm-1x32" in ship_only.stdout


def test_shipped_runs_are_not_trained_again_on_a_fresh_machine(tmp_path):
    shipped = tmp_path / "docs" / "classify" / "classify-gru-1x128"
    shipped.mkdir(parents=True)
    (shipped / "results.json").write_text(json.dumps({"test_acc": 0.99}))
    result = run_entry(
        "study",
        "dry_run=true",
        f"out={tmp_path / 'runs'}",  # empty: a fresh machine
        f"docs={tmp_path / 'docs'}",
        "tasks=[classify]",
        "sizes=[1x128,1x32]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweeps = [line for line in result.stdout.splitlines() if "experiments.train -m" in line]
    assert sweeps[0].startswith("$ python -m experiments.train -m +experiment=classify_grid")
    assert " cell=lstm size=1x128 " in sweeps[0]  # the GRU is shipped: only the LSTM trains
    assert " cell=gru,lstm size=1x32 " in sweeps[1]


def test_a_cell_with_overrides_of_its_own_trains_in_its_own_sweep_beside_the_other(tmp_path):
    result = run_entry(
        "study",
        "dry_run=true",
        f"out={tmp_path / 'runs'}",
        f"docs={tmp_path / 'docs'}",
        "tasks=[predict]",
        "sizes=[1x128]",
        'size_overrides={predict: {1x128: ["model.lr=0.002"], '
        'lstm-1x128: ["trainer.max_epochs=16"]}}',
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweeps = [line for line in result.stdout.splitlines() if "experiments.train -m" in line]
    assert len(sweeps) == 2 and all(line.endswith(" &") for line in sweeps)  # side by side
    gru, lstm = sweeps
    assert " cell=gru size=1x128 " in gru and "trainer.max_epochs=16" not in gru
    assert " cell=lstm size=1x128 " in lstm and "model.lr=0.002 trainer.max_epochs=16" in lstm
    assert "model.lr=0.002" in gru


def test_the_state_analysis_runs_again_when_a_better_classifier_is_shipped(tmp_path):
    for name, acc in (("classify-gru-1x32", 0.97), ("classify-lstm-1x64", 0.98)):
        shipped = tmp_path / "docs" / "classify" / name
        shipped.mkdir(parents=True)
        (shipped / "results.json").write_text(json.dumps({"test_acc": acc}))
    analysis = tmp_path / "runs" / "analyze" / "analysis.json"
    analysis.parent.mkdir(parents=True)
    args = [
        "dry_run=true",
        "train=false",
        f"out={tmp_path / 'runs'}",
        f"docs={tmp_path / 'docs'}",
        f"pretrained={tmp_path / 'pretrained'}",
    ]

    def analyze_line(made_from: str) -> str:
        analysis.write_text(json.dumps({"checkpoint": f"/somewhere/{made_from}.ckpt"}))
        result = run_entry("study", *args)
        assert result.returncode == 0, result.stderr[-3000:]
        (line,) = [x for x in result.stdout.splitlines() if "experiments.analyze" in x]
        return line

    # made from the best shipped classifier: done; from another one: made again from the best
    assert analyze_line("classify-lstm-1x64").startswith("done before: experiments.analyze")
    stale = analyze_line("classify-gru-1x32")
    assert stale.startswith("$ python -m experiments.analyze ckpt=pretrained:classify-lstm-1x64")
