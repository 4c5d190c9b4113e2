"""The classifier LightningModule: shapes, gradients, optimizers, checkpoints."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import save_untrained
from torch import nn

from seqrnn.errors import CheckpointError, ConfigError
from seqrnn.models import SequenceClassifier
from seqrnn.training.checkpoints import check_resumable, read_checkpoint


def small(**kwargs) -> SequenceClassifier:
    return SequenceClassifier(**{"units": 12, "layers": 2, **kwargs})


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize(("steps", "features"), [(784, 1), (28, 28)])
def test_logits_shape_for_pixel_and_row_reading(cell, steps, features):
    model = small(cell=cell, in_features=features)
    logits = model(torch.rand(4, steps, features).round())
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


def test_every_parameter_gets_a_gradient():
    model = small(in_features=28, head_batchnorm=True)
    loss = F.cross_entropy(model(torch.rand(6, 28, 28)), torch.arange(6))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_each_sequence_is_classified_from_its_whole_input_alone():
    # The first step reaches the last output through 27 recurrent steps, and without BatchNorm
    # no sequence sees another.
    model = small(in_features=28).eval()
    x = torch.rand(3, 28, 28)
    x2 = x.clone()
    x2[0, 0] += 1
    a, b = model(x), model(x2)
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[1:], b[1:])


def test_batchnorm_head_uses_running_statistics_in_eval():
    model = small(in_features=28, head_batchnorm=True)
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.head)
    model.eval()
    x = torch.rand(5, 28, 28)
    torch.testing.assert_close(model(x)[:2], model(x[:2]))


def test_a_few_adam_steps_fit_a_fixed_batch():
    torch.manual_seed(0)
    model = small(in_features=28, lr=1e-2)
    optimizer = model.configure_optimizers()
    x, y = torch.rand(20, 28, 28).round(), torch.arange(20) % 10
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_adamw_decays_the_weight_matrices_and_not_the_biases():
    model = small(optimizer="adamw", lr=0.1, weight_decay=0.5)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves a parameter
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer.step()
    for name, p in model.named_parameters():
        expected = before[name] * (1 - 0.1 * 0.5) if p.dim() >= 2 else before[name]
        assert torch.allclose(p, expected), name


def test_sgd_with_momentum_is_nesterov():
    optimizer = small(optimizer="sgd", lr=0.1, momentum=0.8).configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.8 and optimizer.defaults["nesterov"]


@pytest.mark.parametrize(
    ("schedule", "kind"),
    [
        ("step", torch.optim.lr_scheduler.StepLR),
        ("plateau", torch.optim.lr_scheduler.ReduceLROnPlateau),
    ],
)
def test_lr_schedules(schedule, kind):
    config = small(lr_schedule=schedule).configure_optimizers()
    assert isinstance(config["lr_scheduler"]["scheduler"], kind)
    assert config["lr_scheduler"]["monitor"] == "val/loss"


def test_onecycle_warms_up_then_anneals_per_step(tiny_mnist):
    from conftest import quiet_trainer, tiny_rows

    rates = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    model = small(in_features=28, lr=0.01, lr_schedule="onecycle", lr_warmup=0.25)
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=1)
    trainer.callbacks.append(Record())
    trainer.fit(model, datamodule=tiny_rows(tiny_mnist))
    assert len(rates) == 8  # one rate per step: 2 epochs x 4 batches
    peak = rates.index(max(rates))
    # the warm-up is 25% of the 8 steps: the rate peaks at the third step
    assert peak == 2 and max(rates) == pytest.approx(0.01)
    assert rates[0] == pytest.approx(0.01 / 25)
    assert all(a < b for a, b in zip(rates[:peak], rates[1 : peak + 1], strict=True))
    assert all(a > b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr_warmup": 1.0}, r"lr_warmup=1.0 is not allowed; it must be in \(0, 1\)"),
        (
            {"optimizer": "rmsprop"},
            "optimizer='rmsprop' is not allowed; choose one of: adam, adamw, sgd",
        ),
        ({"lr_schedule": "linear"}, "lr_schedule='linear' is not allowed"),
        ({"lr": 0.0}, "lr=0.0 is not allowed; it must be > 0"),
        ({"units": 0}, "units=0 is not allowed"),
        ({"in_features": 0}, "in_features=0 is not allowed"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        small(**kwargs)


@pytest.fixture
def saved_checkpoint(tmp_path):
    return save_untrained(small(in_features=28), tmp_path / "model.ckpt")


def test_checkpoints_record_their_task(saved_checkpoint):
    assert read_checkpoint(saved_checkpoint, "classify")["task"] == "classify"
    with pytest.raises(
        CheckpointError, match="belongs to task=classify; this job needs a task=predict checkpoint"
    ):
        read_checkpoint(saved_checkpoint, "predict")


def test_missing_or_foreign_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.ckpt does not exist"):
        read_checkpoint(tmp_path / "nothing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="other.ckpt is not a seqrnn checkpoint"):
        read_checkpoint(tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="junk.ckpt is not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.ckpt")


def test_resume_refuses_another_architecture(saved_checkpoint):
    assert check_resumable(saved_checkpoint, small(in_features=28)) == saved_checkpoint
    with pytest.raises(CheckpointError, match=r"units=12 \(this run: 16\)"):
        check_resumable(saved_checkpoint, small(in_features=28, units=16))
