"""Time to accuracy: the Milestones callback and results.json's `milestones`."""

import json

import pytest
from conftest import quiet_trainer, run_train, tiny_overrides, tiny_rows

from seqrnn.callbacks.milestones import Milestones
from seqrnn.models import NextPixelPredictor, SequenceClassifier
from seqrnn.models.base import MilestoneSpec


def scripted(model_class, name, values, **kwargs):
    """A model of ``model_class`` that logs ``values[epoch]`` as its validation ``name``."""

    class Scripted(model_class):
        def validation_step(self, batch, batch_idx):
            self.log(name, values[self.current_epoch], on_epoch=True)

    return Scripted(**kwargs)


def fit_scripted(model, datamodule, epochs):
    milestones = Milestones()
    trainer = quiet_trainer(
        max_epochs=epochs, limit_train_batches=1, limit_val_batches=1, callbacks=[milestones]
    )
    trainer.fit(model, datamodule=datamodule)
    return milestones.reached


def test_classifier_milestones_record_the_first_epoch_at_or_above_each_accuracy(tiny_mnist):
    values = [0.5, 0.96, 0.93, 0.975, 0.985]
    model = scripted(SequenceClassifier, "val/acc", values, in_features=28, units=8)
    reached = fit_scripted(model, tiny_rows(tiny_mnist), len(values))
    assert list(reached) == [f"val/acc>={t:g}" for t in (0.9, 0.95, 0.97, 0.98, 0.99)]
    epochs = {key: (at or {}).get("epoch") for key, at in reached.items()}
    # 0.90 and 0.95 first at epoch 2; the dip at epoch 3 changes nothing; 0.99 never
    assert epochs == {
        "val/acc>=0.9": 2,
        "val/acc>=0.95": 2,
        "val/acc>=0.97": 4,
        "val/acc>=0.98": 5,
        "val/acc>=0.99": None,
    }
    seconds = [reached[k]["seconds"] for k in ("val/acc>=0.9", "val/acc>=0.97", "val/acc>=0.98")]
    assert 0 <= seconds[0] <= seconds[1] <= seconds[2]


def test_predictor_milestones_are_losses_at_or_below(tiny_mnist):
    values = [0.2, 0.11, 0.0899]
    model = scripted(NextPixelPredictor, "val/loss", values, units=8)
    reached = fit_scripted(model, tiny_rows(tiny_mnist, order="pixel"), len(values))
    epochs = {k: (v or {}).get("epoch") for k, v in reached.items()}
    assert epochs == {
        "val/loss<=0.12": 2,
        "val/loss<=0.1": 3,
        "val/loss<=0.09": 3,
        "val/loss<=0.085": None,
        "val/loss<=0.08": None,
    }


def test_milestones_survive_a_checkpoint_round_trip():
    spec = MilestoneSpec("val/acc", "max", (0.5,))
    first = Milestones()
    first.spec = spec
    first.reached = {"val/acc>=0.5": {"epoch": 3, "seconds": 12.5}}
    second = Milestones()
    second.load_state_dict(first.state_dict())
    assert second.reached == first.reached


@pytest.fixture(scope="module")
def run_dir(tiny_mnist, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = run_train(*tiny_overrides(tiny_mnist, run_dir), "trainer.max_epochs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_results_json_holds_milestones_of_every_threshold(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    milestones = results["milestones"]
    assert list(milestones) == [f"val/acc>={t:g}" for t in (0.9, 0.95, 0.97, 0.98, 0.99)]
    # random tiny images: chance accuracy, so no threshold is reached
    assert all(value is None for value in milestones.values())
