"""Permuted MNIST end to end: a run in `data.order=permuted` keeps its permutation's seed in
results.json and its checkpoint; evaluation reads the pixels in that order again; the studies
that show and hide pixels at their places in the image say in one line that they do not apply;
the analysis reads the images in the model's order."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_VAL, run_entry, tiny_overrides

from seqrnn.data import MNISTSequenceDataModule
from seqrnn.training.checkpoints import load_trained


def train_permuted(tiny_mnist, run_dir, *args) -> dict:
    result = run_entry(
        "train",
        *tiny_overrides(tiny_mnist, run_dir),
        "data.order=permuted",
        "data.permutation_seed=5",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        *args,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def test_a_permuted_classifier_keeps_its_order_and_is_evaluated_in_it(tiny_mnist, tmp_path):
    results = train_permuted(tiny_mnist, tmp_path / "run", "task=classify")
    assert results["order"] == "permuted" and results["permutation_seed"] == 5
    assert results["data"] == "permuted order (seed 5)"
    saved = torch.load(tmp_path / "run" / results["checkpoint"], weights_only=False)
    assert saved["datamodule_hyper_parameters"]["permutation_seed"] == 5
    data = [f"data.root={tiny_mnist}", "data.verify=false"]
    evaluated = run_entry(
        "evaluate", f"ckpt={tmp_path / 'run'}", *data, f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert evaluation["val_loss"] == pytest.approx(results["val_loss"], rel=1e-5)
    # ... and read in pixel order, the same images give another loss
    model, _, _ = load_trained(tmp_path / "run", "evaluate", "cpu")
    pixel = MNISTSequenceDataModule(str(tiny_mnist), verify=False, val_size=TINY_VAL)
    pixel.setup()
    with torch.no_grad():
        x, y = pixel.splits["val"]
        in_pixel_order = F.cross_entropy(model(x.float()), y).item()
    assert abs(in_pixel_order - results["val_loss"]) > 1e-4
    # the analysis reads the test images in the model's order too: the read-out after every step
    analyzed = run_entry(
        "analyze", f"ckpt={tmp_path / 'run'}", *data, f"hydra.run.dir={tmp_path / 'analysis'}"
    )
    assert analyzed.returncode == 0, analyzed.stderr[-3000:]
    analysis = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert len(analysis["accuracy_by_step"]) == 784
    assert analysis["final_accuracy"] == pytest.approx(results["test_acc"], abs=1e-6)


def test_a_permuted_predictor_is_not_completed_or_inpainted(tiny_mnist, tmp_path):
    train_permuted(tiny_mnist, tmp_path / "run", "task=predict")
    for job in ("complete", "inpaint"):
        refused = run_entry(job, f"ckpt={tmp_path / 'run'}", f"data.root={tiny_mnist}")
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-3000:]
        assert f"{job} takes models trained in data.order=pixel" in lines[0]
