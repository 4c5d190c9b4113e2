"""State analysis: read-out over time against a prefix-by-prefix reference, per-layer states,
the Bayes comparison, and `python -m experiments.analyze` end to end."""

import json

import pytest
import torch
from conftest import run_entry, save_untrained

from seqrnn.data.dirichlet import generate
from seqrnn.models import SequenceClassifier, SymbolPredictor
from seqrnn.studies.analysis import (
    analyze_classifier,
    compare_with_bayes,
    layer_states,
    readout_over_time,
)


def small_classifier(cell="gru", layers=1, features=1) -> SequenceClassifier:
    torch.manual_seed(0)
    model = SequenceClassifier(
        in_features=features, cell=cell, units=6, layers=layers, head_batchnorm=True
    )
    # BatchNorm with non-trivial statistics, as after training
    norm = next(m for m in model.head.modules() if isinstance(m, torch.nn.BatchNorm1d))
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_readout_at_each_step_equals_classifying_each_prefix(cell):
    model = small_classifier(cell, layers=2, features=3)
    images = (torch.rand(20, 9, 3) > 0.5).to(torch.uint8)
    labels = torch.randint(0, 10, (20,))
    accuracy, confidence = readout_over_time(model, images, labels, batch=7)
    assert accuracy.shape == confidence.shape == (9,)
    with torch.no_grad():
        for t in range(9):
            probs = torch.softmax(model(images[:, : t + 1].float()), dim=-1)
            assert float(accuracy[t]) == pytest.approx(
                float((probs.argmax(-1) == labels).double().mean())
            )
            assert float(confidence[t]) == pytest.approx(float(probs.amax(-1).mean()), abs=1e-6)


@pytest.mark.parametrize(("cell", "names"), [("gru", {"h"}), ("lstm", {"h", "c"})])
def test_layer_states_end_in_the_top_layer_outputs(cell, names):
    model = small_classifier(cell, layers=2)
    image = (torch.rand(15, 1) > 0.5).to(torch.uint8)
    states = layer_states(model, image)
    assert len(states) == 2 and all(set(layer) == names for layer in states)
    assert all(v.shape == (15, 6) for layer in states for v in layer.values())
    with torch.no_grad():
        top, _ = model.encode(image.float()[None])
    torch.testing.assert_close(states[-1]["h"], top[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(states[0]["h"], states[1]["h"])


def test_analyze_classifier_writes_figures_per_layer_and_the_step_it_knows(tmp_path):
    model = small_classifier("lstm", layers=2)
    images = (torch.rand(30, 12, 1) > 0.5).to(torch.uint8)
    labels = torch.randint(0, 10, (30,))
    report = analyze_classifier(model, images, labels, tmp_path, image=4)
    saved = json.loads((tmp_path / "analysis.json").read_text())
    assert saved["image"] == 4 and saved["label"] == int(labels[4])
    assert len(saved["accuracy_by_step"]) == 12 and saved["test_images"] == 30
    accuracy = torch.tensor(saved["accuracy_by_step"])
    knows = saved["knows_at_step"]
    assert accuracy[knows - 1] >= 0.95 * accuracy[-1] - 1e-5
    assert (accuracy[: knows - 1] < 0.95 * accuracy[-1]).all()
    names = sorted(p.split("/")[-1] for p in report["figures"])
    assert names == [
        "layer1_c.png",
        "layer1_h.png",
        "layer2_c.png",
        "layer2_h.png",
        "readout.png",
    ]
    assert all((tmp_path / p).is_file() for p in report["figures"])
    assert (tmp_path / "tensorboard").is_dir()


def test_compare_with_bayes_agrees_with_the_training_metrics():
    torch.manual_seed(1)
    alpha = (1.3, 1.3, 1.3)
    model = SymbolPredictor(alpha=alpha, period=4, units=8).eval()
    symbols = generate(12, alpha, 4, 3, seed=5)
    table = compare_with_bayes(model, symbols.unsqueeze(-1), batch=5)
    with torch.no_grad():
        loss, logged = model.batch_metrics((symbols, torch.zeros(12)), "val")
    assert table["kl"] == pytest.approx(float(logged["kl"]), rel=1e-4)
    assert table["network_ce"] == pytest.approx(float(loss), rel=1e-4)
    assert table["bayes_ce"] == pytest.approx(float(logged["bayes_loss"]), rel=1e-5)


def analyze_args(tiny_mnist, out_dir, *extra):
    return [
        f"data.root={tiny_mnist}",
        "data.verify=false",
        "data.val_size=20",
        f"hydra.run.dir={out_dir}",
        *extra,
    ]


def test_cli_analyzes_a_classifier(tiny_mnist, checkpoints, tmp_path):
    result = run_entry(
        "analyze",
        *analyze_args(tiny_mnist, tmp_path, f"ckpt={checkpoints['classify']}", "image=3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "analysis.json").read_text())
    assert report["test_images"] == 40 and len(report["accuracy_by_step"]) == 784
    assert {"figures/readout.png", "figures/layer1_h.png"} <= set(report["figures"])
    assert "final accuracy" in result.stdout


def test_cli_compares_a_symbol_predictor_with_bayes(tmp_path):
    torch.manual_seed(0)
    ckpt = save_untrained(
        SymbolPredictor(alpha=(10.0, 1.0, 1.0), period=3, units=8), tmp_path / "sym.ckpt"
    )
    # the checkpoint holds no data settings (never trained): analyze uses the model's process
    result = run_entry("analyze", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 'out'}", "shown=2")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert set(report["table"]) == {"test", "fixed_p"}
    assert report["fixed_p"] == pytest.approx([10 / 12, 1 / 12, 1 / 12])
    for row in report["table"].values():
        assert row["kl"] > 0 and row["network_ce"] > row["bayes_ce"] > 0
    assert len(report["figures"]) == 2
    assert "KL" in result.stdout


def test_cli_refuses_a_predictor_checkpoint(tiny_mnist, checkpoints, tmp_path):
    result = run_entry(
        "analyze", *analyze_args(tiny_mnist, tmp_path, f"ckpt={checkpoints['predict']}")
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "belongs to task=predict; analyze takes task=classify" in lines[0]


def test_cli_names_an_image_past_the_test_set(tiny_mnist, checkpoints, tmp_path):
    result = run_entry(
        "analyze",
        *analyze_args(tiny_mnist, tmp_path, f"ckpt={checkpoints['classify']}", "image=20000"),
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: image=20000 is not allowed; it must be an integer in 0..39"
    )
    assert result.stderr.count("\n") == 1
