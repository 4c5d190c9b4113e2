"""Permuted MNIST end to end: a run in `data.order=permuted` keeps its permutation's seed in
results.json and its checkpoint; evaluation reads the pixels in that order again;
the analysis, completion and in-painting read the images in the model's order."""

import json

import numpy as np
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


def test_a_permuted_predictor_is_completed_and_inpainted_in_its_order(tiny_mnist, tmp_path):
    """Both studies run on a permuted predictor; in-painting scores each filling as the model
    reads it (brute force: the model's log-probability of the filled image, permuted)."""
    from seqrnn.data.datamodule import pixel_permutation
    from seqrnn.models.inpainting import candidates

    train_permuted(tiny_mnist, tmp_path / "run", "task=predict")
    data = [f"data.root={tiny_mnist}", "data.verify=false", f"data.val_size={TINY_VAL}"]
    completed = run_entry(
        "complete",
        f"ckpt={tmp_path / 'run'}",
        *data,
        "count=4",
        "samples=2",
        "scratch=0",
        "horizons=[1,10]",
        "hidden=20",
        f"hydra.run.dir={tmp_path / 'complete'}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "complete" / "completion.json").is_file()
    inpainted = run_entry(
        "inpaint",
        f"ckpt={tmp_path / 'run'}",
        *data,
        "dataset=two_by_two",
        "count=3",
        f"hydra.run.dir={tmp_path / 'inpaint'}",
    )
    assert inpainted.returncode == 0, inpainted.stderr[-3000:]
    found = dict(np.load(tmp_path / "inpaint" / "posterior.npz"))
    masked = torch.from_numpy(np.load(tmp_path / "inpaint" / "dataset.npz")["images"])
    model, _, _ = load_trained(tmp_path / "run", "inpaint", "cpu")
    reading = pixel_permutation(784, 5)
    for i, image in enumerate(masked):
        positions = torch.from_numpy(found["positions"][i]).long()  # image places
        assert set(positions.tolist()) == set((image < 0).nonzero().flatten().tolist())
        fillings = candidates(len(positions))
        filled = image.long().clamp(min=0).repeat(len(fillings), 1)
        filled[:, positions] = fillings
        with torch.no_grad():
            log_joint = model.log_prob(filled[:, reading]).double()
        expected = torch.softmax(log_joint, 0)
        shown = torch.from_numpy(found["fillings_probs"][i][: len(fillings)]).double()
        torch.testing.assert_close(shown, expected, atol=1e-4, rtol=1e-3)


def test_a_permuted_sequence_is_drawn_at_its_places_in_the_image():
    from seqrnn.data.datamodule import pixel_permutation
    from seqrnn.studies.figures import render

    image = (torch.rand(784) > 0.5).long()
    reading = pixel_permutation(784, 5)
    np.testing.assert_array_equal(render(image[reading], 784, reading=reading), render(image, 784))
    # seen and hidden steps land where the model read them
    seen = render(image[reading], 300, reading=reading).reshape(784, 3)
    hidden = render(torch.zeros(784), 0).reshape(784, 3)[0]
    assert (seen[reading[300:]] == hidden).all() and not (seen[reading[:300]] == hidden).all(
        1
    ).any()
