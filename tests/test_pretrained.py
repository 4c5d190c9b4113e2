"""Shipped weights: `pretrained:NAME`, exporting a run's weights, and `experiments.evaluate`."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import REAL_MNIST, run_entry

from seqrnn.data import MNISTSequenceDataModule
from seqrnn.errors import CheckpointError
from seqrnn.models import TASKS, SequenceClassifier
from seqrnn.pretrained import PRETRAINED_DIR, shipped
from seqrnn.training.checkpoints import export_weights, read_checkpoint, resolve_checkpoint


def test_pretrained_names_resolve_to_the_package_files(monkeypatch, tmp_path):
    monkeypatch.setattr("seqrnn.training.checkpoints.PRETRAINED_DIR", tmp_path)
    monkeypatch.setattr("seqrnn.pretrained.PRETRAINED_DIR", tmp_path)
    (tmp_path / "classify-gru-1x32.ckpt").write_bytes(b"")
    assert resolve_checkpoint("pretrained:classify-gru-1x32") == tmp_path / "classify-gru-1x32.ckpt"
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint("pretrained:classify-gru-9x9")
    assert str(error.value) == (
        "ckpt=pretrained:classify-gru-9x9 is not a shipped checkpoint; shipped: "
        "classify-gru-1x32 (as pretrained:<task>-<cell>-<layers>x<units>)"
    )


def test_an_unknown_pretrained_name_is_one_line_on_the_command_line(tiny_mnist):
    result = run_entry("evaluate", "ckpt=pretrained:predict-rnn-1x1", f"data.root={tiny_mnist}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: ckpt=pretrained:predict-rnn-1x1 is not a shipped checkpoint; shipped: "
    )


def test_exported_weights_drop_training_state_and_predict_the_same(checkpoints, tmp_path):
    source = read_checkpoint(checkpoints["classify"])
    target = export_weights(checkpoints["classify"], tmp_path / "slim.ckpt")
    slim = torch.load(target, weights_only=False)
    assert "optimizer_states" in source and "loops" in source
    assert not {"optimizer_states", "lr_schedulers", "loops", "callbacks"} & set(slim)
    assert slim["task"] == "classify"
    original = SequenceClassifier.load_from_checkpoint(checkpoints["classify"]).eval()
    shipped_model = SequenceClassifier.load_from_checkpoint(target).eval()
    x = torch.randint(0, 2, (3, 784, 1)).float()
    torch.testing.assert_close(shipped_model(x), original(x), atol=0, rtol=0)


def test_evaluate_reports_what_the_weights_give(tiny_mnist, checkpoints, tmp_path):
    result = run_entry(
        "evaluate",
        f"ckpt={checkpoints['classify']}",
        f"data.root={tiny_mnist}",
        "data.verify=false",
        "data.val_size=20",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["evaluated"] == {"train": 80, "val": 20, "test": 40}
    # brute force: the model on each test image, one at a time
    model = SequenceClassifier.load_from_checkpoint(checkpoints["classify"]).eval()
    data = MNISTSequenceDataModule(str(tiny_mnist), val_size=20, download=False, verify=False)
    data.setup()
    images, labels = data.splits["test"]
    with torch.no_grad():
        logits = torch.cat([model(image[None].float()) for image in images])
    assert evaluation["test_acc"] == pytest.approx((logits.argmax(1) == labels).float().mean())
    assert evaluation["test_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), 1e-5)
    assert "test  (40 examples): acc " in result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("name", shipped())
def test_every_shipped_checkpoint_loads_and_predicts(name, real_mnist):
    task, cell, size, *order = name.split("-")
    checkpoint = read_checkpoint(PRETRAINED_DIR / f"{name}.ckpt", task)
    hp = checkpoint["hyper_parameters"]
    assert (hp["cell"], f"{hp['layers']}x{hp['units']}") == (cell, size)
    model = TASKS[task].load_from_checkpoint(resolve_checkpoint(f"pretrained:{name}")).eval()
    trained_on = checkpoint["datamodule_hyper_parameters"]
    assert trained_on["order"] == (order[0] if order else "pixel")  # the name says the order
    kept = ("order", "permutation_seed", "threshold")  # the settings it was trained with
    data = MNISTSequenceDataModule(
        str(REAL_MNIST), **{key: trained_on[key] for key in kept if key in trained_on}
    )
    data.setup()
    images, labels = data.splits["test"]
    x, y = images[:64].float(), labels[:64]
    with torch.no_grad():
        if task == "classify":  # a trained classifier names most of 64 digits
            assert (model(x).argmax(1) == y).float().mean() > 0.9
        else:  # a trained predictor: well under a random guess's log 2 nats a pixel
            assert model.log_prob(x).mean().neg() / x.shape[1] < 0.15


def test_a_permuted_order_model_is_exported_under_a_name_that_says_so(checkpoints, tmp_path):
    """A model trained in permuted order must never take the pixel-order model's name (and
    replace its weights): the exported name ends with its order."""
    checkpoint = torch.load(checkpoints["classify"], weights_only=False)
    checkpoint["datamodule_hyper_parameters"] = {"order": "permuted", "permutation_seed": 5544}
    torch.save(checkpoint, tmp_path / "permuted.ckpt")
    pixel = run_entry("export", str(checkpoints["classify"]), "--to", str(tmp_path / "out"))
    permuted = run_entry("export", str(tmp_path / "permuted.ckpt"), "--to", str(tmp_path / "out"))
    assert pixel.returncode == 0 and permuted.returncode == 0, pixel.stderr + permuted.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["classify-gru-1x8-permuted.ckpt", "classify-gru-1x8.ckpt"]
