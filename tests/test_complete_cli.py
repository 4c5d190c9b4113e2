"""`python -m experiments.complete` end to end on a tiny predictor, and its errors."""

import json

import pytest
from conftest import run_entry


def complete_args(tiny_mnist, out_dir, *extra):
    return [
        f"data.root={tiny_mnist}",
        "data.verify=false",
        "data.val_size=20",
        "count=4",
        "hidden=40",
        "horizons=[1,10,40]",
        "samples=3",
        "shown_samples=2",
        "scratch=0",
        f"hydra.run.dir={out_dir}",
        *extra,
    ]


def test_completes_and_writes_the_study(tiny_mnist, checkpoints, tmp_path):
    result = run_entry(
        "complete", *complete_args(tiny_mnist, tmp_path, f"ckpt={checkpoints['predict']}")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "completion.json").read_text())
    assert [row["n"] for row in report["table"]] == [1, 10, 40]
    assert report["count"] == 4 and report["samples"] == 3
    assert all((tmp_path / path).is_file() for path in report["figures"])
    assert str(tmp_path) in result.stdout and "completion.json" in result.stdout


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("classifier", "belongs to task=classify; complete takes task=predict"),
        ("missing", "does not exist"),
        ("too_far", "n=400 is not allowed; each n must be an integer from 1 to the hidden part"),
        ("no_ckpt", "ckpt=<run dir or .ckpt> is required"),
    ],
)
def test_bad_input_gets_one_line(case, message, tiny_mnist, checkpoints, tmp_path):
    extra = {
        "classifier": [f"ckpt={checkpoints['classify']}"],
        "missing": [f"ckpt={tmp_path / 'nothing.ckpt'}"],
        "too_far": [f"ckpt={checkpoints['predict']}", "horizons=[1,400]", "hidden=300"],
        "no_ckpt": [],
    }[case]
    result = run_entry("complete", *complete_args(tiny_mnist, tmp_path / "out"), *extra)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
