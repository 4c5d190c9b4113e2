"""How a run ended: results.json's `status`, and stopping on a non-finite loss."""

import json
import math

import pytest
from conftest import quiet_trainer, run_train, tiny_overrides, tiny_rows
from lightning.pytorch.callbacks import EarlyStopping, Timer

from seqrnn.callbacks import StopOnDivergence
from seqrnn.models import SequenceClassifier
from seqrnn.training.status import run_status


class DivergesAt(SequenceClassifier):
    """A classifier whose training loss turns into NaN at global step ``at``."""

    def __init__(self, at: int, **kwargs):
        super().__init__(**kwargs)
        self.at = at

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * math.nan if self.global_step == self.at else loss


def test_a_non_finite_loss_stops_the_run_and_names_where(tiny_mnist, capsys):
    divergence = StopOnDivergence()
    trainer = quiet_trainer(max_epochs=5, limit_val_batches=1, callbacks=[divergence])
    model = DivergesAt(7, in_features=28, units=8)
    trainer.fit(model, datamodule=tiny_rows(tiny_mnist))  # 5 batches an epoch
    assert divergence.diverged_at == (2, 8)  # the 8th step (global_step 7 -> 8 after it)
    assert trainer.current_epoch < 5 and run_status(trainer) == "diverged"
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("diverged")]
    assert line == [
        "diverged: training loss nan at epoch 2, step 8; training stops, the best checkpoint "
        "is kept"
    ]


@pytest.mark.parametrize(
    ("callbacks", "epochs", "status"),
    [
        (lambda: [], 2, "completed"),
        (lambda: [Timer(duration={"seconds": 0})], 3, "time_budget"),
        (
            lambda: [EarlyStopping("train/loss", patience=0, divergence_threshold=1e-9)],
            3,
            "early_stopped",
        ),
    ],
)
def test_status_says_what_ended_the_run(tiny_mnist, callbacks, epochs, status):
    trainer = quiet_trainer(max_epochs=epochs, limit_val_batches=1, callbacks=callbacks())
    trainer.fit(SequenceClassifier(in_features=28, units=8), datamodule=tiny_rows(tiny_mnist))
    assert run_status(trainer) == status
    if status != "completed":
        assert trainer.current_epoch < epochs


def test_results_json_records_the_status(tiny_mnist, tmp_path):
    result = run_train(
        *tiny_overrides(tiny_mnist, tmp_path), "data.order=row", "trainer.max_epochs=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "completed"
