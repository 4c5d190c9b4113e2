"""Precise BatchNorm statistics: the helper against brute force, and the model's use of it."""

import itertools

import lightning as L
import torch
from conftest import quiet_trainer, tiny_rows
from torch import nn

from seqrnn.models import SequenceClassifier
from seqrnn.nn.batchnorm import refresh_batchnorm_statistics


def test_statistics_are_the_average_over_the_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5)).train()
    batches = [torch.randn(8, 4) * (i + 1) + i for i in range(3)]
    used = refresh_batchnorm_statistics(model, batches, model)
    assert used == 3
    with torch.no_grad():
        features = [model[0](b) for b in batches]
    bn = model[1]
    # momentum=None makes a cumulative average: the mean of per-batch means and of per-batch
    # unbiased variances.
    torch.testing.assert_close(bn.running_mean, torch.stack([f.mean(0) for f in features]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([f.var(0) for f in features]).mean(0))
    assert bn.momentum == 0.1 and model.training and model[2].training


def test_a_model_without_batchnorm_is_not_run():
    calls = []
    assert refresh_batchnorm_statistics(nn.Linear(2, 2), [torch.ones(1, 2)], calls.append) == 0
    assert calls == []


def test_classifier_refreshes_statistics_before_validation(tiny_mnist):
    L.seed_everything(0, verbose=False)
    dm = tiny_rows(tiny_mnist)
    model = SequenceClassifier(in_features=28, units=8, head_batchnorm=True, bn_refresh_batches=3)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model, datamodule=dm)
    # The last validation followed the last step: its statistics are those of the final weights
    # over the first 3 batches of the last epoch.
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    model.eval()
    with torch.no_grad():
        features = [
            model.head[0](model.encode(x)[0][:, -1]) for x, _ in itertools.islice(loader, 3)
        ]
    expected = torch.stack([f.mean(0) for f in features]).mean(0)
    torch.testing.assert_close(model.head[1].running_mean, expected)
