"""`python -m experiments.inpaint` end to end on a tiny predictor, and its errors."""

import json

import numpy as np
import pytest
from conftest import run_entry


def inpaint_args(tiny_mnist, out_dir, *extra):
    return [
        f"data.root={tiny_mnist}",
        "data.verify=false",
        "data.val_size=20",
        "count=6",
        "shown=2",
        f"hydra.run.dir={out_dir}",
        *extra,
    ]


def test_inpaints_a_built_two_by_two_set(tiny_mnist, checkpoints, tmp_path):
    result = run_entry(
        "inpaint",
        *inpaint_args(tiny_mnist, tmp_path, f"ckpt={checkpoints['predict']}", "dataset=two_by_two"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "inpaint.json").read_text())
    assert report["images"] == 6 and report["hidden_per_image"] == [4]
    metrics = report["metrics"]
    assert metrics["hidden_pixels"] == 24 and 0 <= metrics["map_pixel_acc"] <= 1
    assert np.load(tmp_path / "posterior.npz")["fillings_probs"].shape == (6, 16)
    assert str(tmp_path) in result.stdout and "inpaint.json" in result.stdout


def test_inpaints_a_users_file_without_ground_truth(tiny_mnist, checkpoints, tmp_path):
    images = np.zeros((3, 784), dtype=np.int8)
    images[:, [40, 400, 700]] = -1
    np.save(tmp_path / "mine.npy", images)
    result = run_entry(
        "inpaint",
        *inpaint_args(
            tiny_mnist,
            tmp_path / "out",
            f"ckpt={checkpoints['predict']}",
            f"dataset={tmp_path / 'mine.npy'}",
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "inpaint.json").read_text())
    assert "metrics" not in report and report["hidden_per_image"] == [3]
    assert np.load(tmp_path / "out" / "posterior.npz")["fillings_probs"].shape == (3, 8)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("classifier", "belongs to task=classify; inpaint takes task=predict"),
        ("bad_shape", r"images has shape [3, 100]; expected [N, 784] or [N, 28, 28]"),
        ("too_many", "image 0 has 20 hidden pixels; the cap is max_hidden=12"),
    ],
)
def test_bad_input_gets_one_line(case, message, tiny_mnist, checkpoints, tmp_path):
    np.save(tmp_path / "bad_shape.npy", np.zeros((3, 100), dtype=np.int8))
    many = np.zeros((2, 784), dtype=np.int8)
    many[:, :20] = -1
    np.save(tmp_path / "too_many.npy", many)
    ckpt = checkpoints["classify" if case == "classifier" else "predict"]
    dataset = "one_pixel" if case == "classifier" else tmp_path / f"{case}.npy"
    result = run_entry(
        "inpaint", *inpaint_args(tiny_mnist, tmp_path / "out", f"ckpt={ckpt}", f"dataset={dataset}")
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
