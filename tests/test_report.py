"""The report: run statuses, duplicates as mean ± spread, what did not finish."""

import json

import pytest
import yaml

from seqrnn.sweeps.report import find_runs, markdown_table, tables, write_report


def fake_run(root, name, cell="gru", size=(1, 32), results=None, last=False, task="classify"):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {
        "task": task,
        "cell": cell,
        "layers": size[0],
        "units": size[1],
        "data": {"order": "pixel"},
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if results is not None:
        full = {
            "task": task,
            "cell": cell,
            "layers": size[0],
            "units": size[1],
            "order": "pixel",
            "epochs": 2,
            "wall_seconds": 10.0,
            "params": 100,
            **results,
        }
        (run / "results.json").write_text(json.dumps(full))
    if last:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run


def test_statuses_and_duplicates(tmp_path):
    scores = {"test_acc": 0.5, "train_acc": 0.6, "train_loss": 1.0}
    fake_run(tmp_path, "a", results={**scores, "test_loss": 1.0})
    fake_run(tmp_path, "b", results={**scores, "test_loss": 2.0})
    fake_run(tmp_path, "c", last=True)
    fake_run(tmp_path, "d", size=(3, 32))
    fake_run(tmp_path, "e", cell="lstm", size=(1, 64), results={**scores, "test_loss": 0.5})
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "results.json").write_text("{}")  # not a training run
    runs = find_runs(tmp_path)
    assert {r.path.name: r.status for r in runs} == {
        "a": "done",
        "b": "done",
        "c": "incomplete",
        "d": "failed",
        "e": "done",
    }
    grouped = tables(runs)
    assert list(grouped) == [
        ("classify", "gru", "pixel order"),
        ("classify", "lstm", "pixel order"),
    ]
    assert list(grouped[("classify", "gru", "pixel order")]) == ["1x32", "3x32"]

    written = write_report(tmp_path)
    report = written["markdown"].read_text()
    assert "5 runs: 3 done, 1 incomplete, 1 failed" in report
    # 1x32: mean and sample standard deviation of 1.0 and 2.0, plus the stopped run
    assert "| test loss | 1.5000 ± 0.7071 (n=2) (1 incomplete) | 1 failed |" in report
    assert "| test loss | 0.5000 |" in report
    assert written["csv"].read_text().count("\n") == 1 + 5


def test_predict_tables_have_no_accuracy_rows(tmp_path):
    fake_run(tmp_path, "p", task="predict", results={"test_loss": 0.1, "train_loss": 0.1})
    report = write_report(tmp_path)["markdown"].read_text()
    assert "| test loss | 0.1000 |" in report and "accuracy" not in report


def test_report_command_names_a_missing_folder(tmp_path, capsys):
    import pytest

    from experiments.report import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
    assert "nothing is not a folder" in capsys.readouterr().err


def test_symbol_runs_are_tabled_by_their_process(tmp_path):
    done = fake_run(tmp_path, "s", task="dirichlet", results={"test_loss": 0.5, "test_kl": 2e-4})
    results = json.loads((done / "results.json").read_text())
    results.update(order="symbols", data="T=5, alpha=(10,1,1)")
    (done / "results.json").write_text(json.dumps(results))
    # a stopped run of the same process has only its config to say what its data were
    stopped = fake_run(tmp_path, "t", task="dirichlet", size=(1, 64), last=True)
    config = yaml.safe_load((stopped / ".hydra" / "config.yaml").read_text())
    config["data"] = {"alpha": [10.0, 1.0, 1.0], "period": 5, "fixed_p": None}
    (stopped / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))

    assert list(tables(find_runs(tmp_path))) == [("dirichlet", "gru", "T=5, alpha=(10,1,1)")]
    report = write_report(tmp_path)["markdown"].read_text()
    assert "| test KL from Bayes | 2.00e-04 | 1 incomplete |" in report
    assert "accuracy" not in report
    assert (tmp_path / "curves_dirichlet_gru_T_5_alpha_10_1_1.png").is_file()


def recipe_run(root, name, seed, lr, batch_size, results, milestones=None):
    run = fake_run(root, name, results={**results, "milestones": milestones or {}})
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    config.update(
        seed=seed,
        threads=1,
        model={"lr": lr, "units": 32},
        data={"order": "pixel", "batch_size": batch_size, "seed": seed, "root": f"/data/{name}"},
    )
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def test_only_seeds_make_replicates_and_recipes_are_labelled_by_what_differs(tmp_path):
    reached = {"val/acc>=0.98": {"epoch": 4, "seconds": 600.0}}
    missed = {"val/acc>=0.98": None}
    recipe_run(tmp_path, "a", 1, 0.001, 128, {"test_acc": 0.96}, missed)
    recipe_run(tmp_path, "b", 2, 0.001, 128, {"test_acc": 0.98}, reached)
    recipe_run(tmp_path, "c", 1, 0.003, 256, {"test_acc": 0.90, "status": "diverged"}, reached)
    columns = tables(find_runs(tmp_path))[("classify", "gru", "pixel order")]
    # seed, data.seed, threads and data.root differ too, but make no recipe
    assert {k: sorted(r.path.name for r in v) for k, v in columns.items()} == {
        "1x32 (batch_size=128, lr=0.001)": ["a", "b"],
        "1x32 (batch_size=256, lr=0.003)": ["c"],
    }
    table = markdown_table(columns)
    assert "| test accuracy | 0.9700 ± 0.0141 (n=2) | 0.9000 |" in table
    assert "| minutes to val acc ≥ 0.98 | 10.0 (1 of 2) | 10.0 |" in table
    assert "| ended by | – | diverged |" in table


def test_one_recipe_keeps_plain_size_columns(tmp_path):
    recipe_run(tmp_path, "a", 1, 0.001, 128, {"test_acc": 0.5})
    recipe_run(tmp_path, "b", 2, 0.001, 128, {"test_acc": 0.7})
    columns = tables(find_runs(tmp_path))[("classify", "gru", "pixel order")]
    assert list(columns) == ["1x32"]


def test_comparison_table_puts_each_shipped_run_beside_the_reference():
    from seqrnn.sweeps.report import comparison_table

    record = {"epochs": 12, "wall_seconds": 1800.0}
    shipped = {
        "gru-1x32": {
            "evaluation": {"test_acc": 0.9812},
            "results": {**record, "milestones": {"val/acc>=0.98": {"epoch": 9, "seconds": 900}}},
        },
        "lstm-3x32": {
            "evaluation": {"test_acc": 0.80},
            "results": {**record, "milestones": {"val/acc>=0.98": None}},
        },
    }
    lines = comparison_table(shipped, "classify").splitlines()
    assert lines[2] == "| GRU 1x32 | 0.9812 | 0.9747 | yes | 12 | 30 | 15.0 |"
    assert lines[3] == "| LSTM 3x32 | 0.8000 | 0.8221 | no | 12 | 30 | not reached |"
    # the reports have no LSTM predictor: its row is held to the GRU reference of its size
    predict = {
        "lstm-1x64": {"evaluation": {"test_loss": 0.09}, "results": record},
        "lstm-3x32": {"evaluation": {"test_loss": 0.0910}, "results": record},
        "lstm-2x16": {"evaluation": {"test_loss": 0.0910}, "results": record},
    }
    rows = comparison_table(predict, "predict").splitlines()[2:]
    assert rows[0] == "| LSTM 1x64 | 0.0900 | GRU: 0.0963 | yes | 12 | 30 | not reached |"
    assert rows[1] == "| LSTM 3x32 | 0.0910 | GRU: 0.0906 | no | 12 | 30 | not reached |"
    assert rows[2] == "| LSTM 2x16 | 0.0910 | – | – | 12 | 30 | not reached |"


def test_the_comparison_with_the_reports_reads_pixel_order_runs_only(tmp_path):
    """The reference reports trained in pixel order: a shipped permuted run is not their row."""
    from seqrnn.sweeps.report import read_shipped

    for name, acc in (("classify-gru-1x128", 0.99), ("classify-gru-1x128-permuted", 0.95)):
        folder = tmp_path / "classify" / name
        folder.mkdir(parents=True)
        (folder / "evaluation.json").write_text(json.dumps({"test_acc": acc}))
        (folder / "results.json").write_text(json.dumps({"epochs": 1}))
    shipped = read_shipped(tmp_path, "classify")
    assert list(shipped) == ["gru-1x128"]
    assert shipped["gru-1x128"]["evaluation"]["test_acc"] == 0.99


def test_recipes_are_told_apart_within_a_size_only(tmp_path):
    recipe_run(tmp_path, "a", 1, 0.001, 128, {"test_acc": 0.5})
    other = recipe_run(tmp_path, "b", 1, 0.01, 256, {"test_acc": 0.7})
    config = yaml.safe_load((other / ".hydra" / "config.yaml").read_text())
    config.update(layers=3)
    config["callbacks"] = {"divergence": {"_target_": "seqrnn.callbacks.StopOnDivergence"}}
    (other / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    results = json.loads((other / "results.json").read_text())
    (other / "results.json").write_text(json.dumps({**results, "layers": 3}))
    columns = tables(find_runs(tmp_path))[("classify", "gru", "pixel order")]
    assert list(columns) == ["1x32", "3x32"]


def ship_like_the_study(run, docs):
    """What experiments.study ships of a run dir: results, config and the validation curve."""
    from seqrnn.sweeps.report import write_curve

    target = docs / "classify" / run.name
    target.mkdir(parents=True)
    (target / "results.json").write_text((run / "results.json").read_text())
    (target / "config.yaml").write_text((run / ".hydra" / "config.yaml").read_text())
    return target, write_curve(run, target)


def test_a_shipped_run_reports_as_its_run_dir_did(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from seqrnn.sweeps.report import read_curve

    run = fake_run(tmp_path / "runs", "classify-gru-1x32", results={"test_acc": 0.9})
    with SummaryWriter(str(run / "tensorboard")) as writer:
        for epoch, loss in enumerate([0.9, 0.5, 0.25]):
            writer.add_scalar("val/loss", loss, epoch)
    target, curve = ship_like_the_study(run, tmp_path / "docs")
    assert curve == target / "curve.csv"
    assert read_curve(target) == pytest.approx(read_curve(run)) == [0.9, 0.5, 0.25]
    (shipped,) = find_runs(tmp_path / "docs")
    (original,) = find_runs(tmp_path / "runs")
    assert (shipped.task, shipped.size, shipped.status) == ("classify", "1x32", "done")
    assert (shipped.results, shipped.settings) == (original.results, original.settings)
    written = write_report(tmp_path / "docs")
    assert written["curves_classify_gru_pixel_order"].is_file()


def test_a_figure_is_not_redrawn_without_every_runs_curve(tmp_path):
    # a shipped run without curve.csv (shipped before curves were): the figure drawn from the
    # run dirs stays, and the report says why
    docs = tmp_path / "docs"
    run = fake_run(tmp_path / "runs", "classify-gru-1x32", results={"test_acc": 0.9})
    target, _ = ship_like_the_study(run, docs)
    figure = docs / "curves_classify_gru_pixel_order.png"
    figure.write_bytes(b"drawn before")
    written = write_report(docs)
    assert figure.read_bytes() == b"drawn before"
    assert "curves_classify_gru_pixel_order" not in written
    assert "no curve is shipped for classify-gru-1x32" in written["markdown"].read_text()
    # with its curve, it is redrawn
    (target / "curve.csv").write_text("epoch,val_loss\n1,0.5\n2,0.25\n")
    written = write_report(docs)
    assert figure.read_bytes()[:4] == b"\x89PNG"
