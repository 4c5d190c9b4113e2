"""Bayesian sequences: the generator, the closed-form posterior predictive, the data module,
the symbol predictor and `experiments.train task=dirichlet`."""

import json
import math

import pytest
import torch
from conftest import quiet_trainer, run_train

from seqrnn.data import MNISTSequenceDataModule
from seqrnn.data.dirichlet import DirichletSequenceDataModule, bayes_predictive, generate
from seqrnn.errors import ConfigError
from seqrnn.models import SymbolPredictor, check_task_data

R = 2  # the reset symbol when K = 2


def test_bayes_predictive_on_a_hand_worked_sequence():
    # alpha = (1, 1), T = 3: a segment of three symbols, then the reset; then a new segment.
    symbols = torch.tensor([[0, 0, 1, R, 1, 1]])
    p = bayes_predictive(symbols, alpha=(1.0, 1.0), period=3)
    expected = torch.tensor(
        [
            [1 / 2, 1 / 2, 0],  # nothing seen: alpha / sum(alpha)
            [2 / 3, 1 / 3, 0],  # one 0 seen: (1 + 1) / (1 + 2), (0 + 1) / 3
            [3 / 4, 1 / 4, 0],  # two 0s
            [0, 0, 1],  # three symbols seen: the reset is certain
            [1 / 2, 1 / 2, 0],  # the reset forgets the counts
            [1 / 3, 2 / 3, 0],  # one 1 seen
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(p[0], expected)


def test_bayes_predictive_with_an_uneven_prior():
    # alpha = (10, 1, 1), T = 2, symbols 2 then 2: (10, 1, 1)/12, (10, 1, 2)/13, reset.
    p = bayes_predictive(torch.tensor([[2, 2, 3]]), alpha=(10.0, 1.0, 1.0), period=2)
    torch.testing.assert_close(
        p[0],
        torch.tensor(
            [[10 / 12, 1 / 12, 1 / 12, 0], [10 / 13, 1 / 13, 2 / 13, 0], [0, 0, 0, 1]],
            dtype=torch.float64,
        ),
    )


def test_bayes_predictive_matches_counting_in_a_loop():
    alpha, period = (1.3, 0.7, 2.0), 4
    symbols = generate(5, alpha, period, segments=3, seed=1)
    fast = bayes_predictive(symbols, alpha, period)
    for b in range(len(symbols)):
        counts, seen = torch.zeros(3, dtype=torch.float64), 0
        for t, s in enumerate(symbols[b].tolist()):
            if seen == period:
                expected = torch.tensor([0, 0, 0, 1], dtype=torch.float64)
            else:
                a = torch.tensor(alpha, dtype=torch.float64)
                expected = torch.cat([(counts + a) / (seen + a.sum()), torch.zeros(1)])
            torch.testing.assert_close(fast[b, t], expected.double())
            if s == 3:
                counts, seen = torch.zeros(3, dtype=torch.float64), 0
            else:
                counts[s] += 1
                seen += 1


def test_generated_sequences_have_resets_every_period_and_symbols_in_range():
    symbols = generate(50, (1.0, 2.0, 3.0), period=4, segments=6, seed=0)
    assert symbols.shape == (50, 30) and symbols.dtype == torch.long
    resets = symbols == 3
    assert resets[:, 4::5].all() and resets.sum() == 50 * 6
    assert ((symbols >= 0) & (symbols <= 3)).all()


@pytest.mark.parametrize("alpha", [(10.0, 1.0, 1.0), (1.3, 1.3, 1.3)])
def test_generator_statistics_match_alpha(alpha):
    # Per segment, the frequency f_k of symbol k among its T draws has
    #   E[f_k] = m_k = alpha_k / a0,  Var[f_k] = Var[p_k] + E[p_k (1 - p_k)] / T,
    #   Var[p_k] = m_k (1 - m_k) / (a0 + 1)  (Dirichlet).
    # The variance tells a concentrated prior (a0 = 12) from a flat one (a0 = 3.9).
    period, segments, count = 20, 10, 2000
    symbols = generate(count, alpha, period, segments, seed=3)
    draws = symbols.view(count, segments, period + 1)[..., :period]
    a = torch.tensor(alpha, dtype=torch.float64)
    a0, m = a.sum(), a / a.sum()
    var_p = m * (1 - m) / (a0 + 1)
    expected_var = var_p + (m - (var_p + m**2)) / period
    for k in range(len(alpha)):
        f = (draws == k).double().mean(-1).flatten()  # 20,000 segments
        assert abs(f.mean() - m[k]) < 4 * math.sqrt(expected_var[k] / len(f))
        assert f.var() == pytest.approx(float(expected_var[k]), rel=0.06)


def test_fixed_p_generator_uses_the_given_probabilities():
    symbols = generate(400, (1.0, 1.0, 1.0), period=50, segments=2, seed=0, fixed_p=(0.6, 0.3, 0.1))
    draws = symbols.view(400, 2, 51)[..., :50]
    freq = torch.stack([(draws == k).double().mean() for k in range(3)])
    torch.testing.assert_close(
        freq, torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64), atol=0.01, rtol=0
    )


def test_generation_is_reproducible_and_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = generate(20, (1.3, 1.3, 1.3), 5, 4, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert torch.equal(a, generate(20, (1.3, 1.3, 1.3), 5, 4, seed=7))
    assert not torch.equal(a, generate(20, (1.3, 1.3, 1.3), 5, 4, seed=8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": (1.0, -1.0)}, "data.alpha=[1.0, -1.0] is not allowed"),
        ({"alpha": (2.0,)}, "needs 2 or more positive numbers"),
        ({"period": 0}, "data.period=0 is not allowed"),
        ({"fixed_p": (0.5, 0.6)}, "fixed_p=[0.5, 0.6] must be 2 probabilities summing to 1"),
    ],
)
def test_bad_process_settings_name_the_value(kwargs, message):
    settings = {"count": 2, "alpha": (1.0, 1.0), "period": 3, "segments": 2, **kwargs}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        generate(**settings)


def tiny_symbols(**kwargs) -> DirichletSequenceDataModule:
    settings = {
        "alpha": (10.0, 1.0, 1.0),
        "period": 5,
        "segments": 4,
        "train_size": 256,
        "val_size": 64,
        "test_size": 64,
        "batch_size": 32,
        "eval_batch_size": 64,
        **kwargs,
    }
    datamodule = DirichletSequenceDataModule(**settings)
    datamodule.setup()
    return datamodule


def test_datamodule_serves_symbol_sequences_and_says_what_they_are():
    dm = tiny_symbols(fixed_p=(0.2, 0.4, 0.4))
    assert dm.features == 4 and dm.family == "dirichlet"
    assert dm.description == "T=5, alpha=(10,1,1), test p fixed"
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 24, 1) and y.shape == (32,)
    assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() == 3  # symbols as numbers
    splits = {s: dm.splits[s][0] for s in ("train", "val", "test")}
    assert not torch.equal(splits["train"][:64], splits["val"])
    test_draws = splits["test"].view(64, 4, 6)[..., :5]
    # the fixed test p puts most mass on 1 and 2; Dirichlet(10, 1, 1) on 0
    assert (test_draws == 0).double().mean() < 0.35 < (splits["train"] == 0).double().mean()


def test_tasks_refuse_the_other_family_of_data():
    check_task_data("dirichlet", tiny_symbols())
    with pytest.raises(ConfigError, match="task=classify reads mnist data, not dirichlet"):
        check_task_data("classify", tiny_symbols())
    with pytest.raises(ConfigError, match="task=dirichlet reads dirichlet data, not mnist"):
        check_task_data("dirichlet", MNISTSequenceDataModule(root="unused"))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_predictor_is_causal_and_shaped_per_symbol(cell):
    torch.manual_seed(0)
    model = SymbolPredictor(alpha=(1.0, 1.0, 1.0), period=3, cell=cell, units=8).eval()
    x = generate(4, (1.0, 1.0, 1.0), 3, 3, seed=0).unsqueeze(-1)
    logits = model(x)
    assert logits.shape == (4, 12, 4)
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 3  # symbol 6 may only move predictions 7 and later
    moved = (model(changed) - logits).abs().amax(dim=(0, 2))
    assert (moved[:7] == 0).all() and (moved[7:] > 0).any()


def test_logged_kl_and_bayes_loss_equal_direct_computation():
    torch.manual_seed(0)
    alpha = (10.0, 1.0, 1.0)
    model = SymbolPredictor(alpha=alpha, period=5, units=8)
    symbols = generate(8, alpha, 5, 3, seed=2)
    loss, logged = model.batch_metrics((symbols.unsqueeze(-1), torch.zeros(8)), "val")
    q = torch.softmax(model(symbols), -1).double().detach()
    p = bayes_predictive(symbols, alpha, 5)
    kl = sum(
        float(p[b, t, k] * math.log(p[b, t, k] / q[b, t, k]))
        for b in range(8)
        for t in range(18)
        for k in range(4)
        if p[b, t, k] > 0
    ) / (8 * 18)
    ce = -sum(float(torch.log(q[b, t, symbols[b, t]])) for b in range(8) for t in range(18))
    bayes_ce = -sum(float(torch.log(p[b, t, symbols[b, t]])) for b in range(8) for t in range(18))
    assert float(logged["kl"]) == pytest.approx(kl, rel=1e-4)
    assert loss.item() == pytest.approx(ce / (8 * 18), rel=1e-4)
    assert float(logged["bayes_loss"]) == pytest.approx(bayes_ce / (8 * 18), rel=1e-6)
    assert kl > 0  # an untrained network is not the Bayes predictive


def test_training_brings_the_network_towards_the_bayes_predictive():
    torch.manual_seed(0)
    dm = tiny_symbols(train_size=1024)
    model = SymbolPredictor(alpha=dm.alpha, period=dm.period, units=16, lr=0.01)
    trainer = quiet_trainer(max_epochs=4, num_sanity_val_steps=0)
    before = trainer.validate(model, datamodule=dm, verbose=False)[0]
    trainer.fit(model, datamodule=dm)
    after = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert after["val/kl"] < 0.5 * before["val/kl"]
    assert after["val/loss"] < before["val/loss"]
    # the Bayes predictive does not depend on the network
    assert after["val/bayes_loss"] == pytest.approx(before["val/bayes_loss"])


def test_train_entry_point_runs_task_dirichlet(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        "task=dirichlet",
        "size=1x32",
        "data.period=3",
        "data.segments=4",
        "data.train_size=128",
        "data.val_size=32",
        "data.test_size=32",
        "data.batch_size=32",
        "data.fixed_p=[0.5,0.25,0.25]",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["task"] == "dirichlet" and results["order"] == "symbols"
    assert results["data"] == "T=3, alpha=(10,1,1), test p fixed"
    for split in ("train", "val", "test"):
        assert results[f"{split}_kl"] > 0
        assert results[f"{split}_loss"] > results[f"{split}_bayes_loss"] > 0
    assert results["evaluated"] == {"train": 128, "val": 32, "test": 32}


def test_the_four_presets_cover_both_periods_and_both_priors(tmp_path):
    from hydra import compose, initialize_config_dir

    from experiments._cli import CONF_DIR

    settings = set()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for name in ("bayes_T5_peaked", "bayes_T5_flat", "bayes_T20_peaked", "bayes_T20_flat"):
            cfg = compose("train", [f"+experiment={name}", f"paths.output_dir={tmp_path}"])
            assert (cfg.task, cfg.data._target_.rsplit(".", 1)[-1]) == (
                "dirichlet",
                "DirichletSequenceDataModule",
            )
            # the model's process is the data's (interpolated, never copied by hand)
            assert cfg.model.alpha == cfg.data.alpha and cfg.model.period == cfg.data.period
            settings.add((cfg.data.period, tuple(cfg.data.alpha)))
    assert settings == {(t, a) for t in (5, 20) for a in ((10.0, 1.0, 1.0), (1.3, 1.3, 1.3))}


def test_bayes_metrics_match_the_sums_written_out():
    from seqrnn.data.dirichlet import bayes_metrics

    symbols = generate(3, [2.0, 1.0, 0.5], period=4, segments=3, seed=1)
    bayes = bayes_predictive(symbols, [2.0, 1.0, 0.5], 4)
    log_q = torch.log_softmax(torch.randn(bayes.shape, dtype=torch.float64), dim=-1)
    kl, bayes_ce = bayes_metrics(bayes, log_q, symbols)
    for b in range(symbols.shape[0]):
        for t in range(symbols.shape[1]):
            p = bayes[b, t].tolist()
            expected = sum(
                pk * (math.log(pk) - float(log_q[b, t, k])) for k, pk in enumerate(p) if pk > 0
            )
            assert float(kl[b, t]) == pytest.approx(expected, abs=1e-12)
            assert float(bayes_ce[b, t]) == pytest.approx(-math.log(p[int(symbols[b, t])]))
