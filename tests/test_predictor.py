"""The next-pixel predictor: causality, log_prob and the step-wise sampler against slow loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from seqrnn.errors import ConfigError
from seqrnn.models import NextPixelPredictor

T = 40  # short sequences: the maths does not depend on 784


def model_and_images(cell="gru", layers=2, batch=4, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = NextPixelPredictor(cell=cell, units=12, layers=layers, **kwargs).eval()
    return model, torch.randint(0, 2, (batch, T))


def slow_log_prob(model: NextPixelPredictor, x: torch.Tensor) -> torch.Tensor:
    """Step by step from the start value, one pixel at a time, summing log p(x_t | x_<t)."""
    state, total = None, torch.zeros(len(x))
    previous = torch.full((len(x), 1), model.hparams.start_value)
    for t in range(x.shape[1]):
        out, state = model.stack.step(model.input_proj(previous), state)
        logit = model.head(out).squeeze(-1)
        total -= F.binary_cross_entropy_with_logits(logit, x[:, t].float(), reduction="none")
        previous = x[:, t : t + 1].float()
    return total


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_log_prob_equals_the_slow_step_by_step_sum(cell):
    model, x = model_and_images(cell, start_value=0.5)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), slow_log_prob(model, x), atol=1e-4, rtol=1e-5)
    assert model.log_prob(x).shape == (4,)


def test_each_logit_sees_only_earlier_pixels():
    model, x = model_and_images()
    t = 17
    changed = x.clone()
    changed[:, t] = 1 - changed[:, t]
    with torch.no_grad():
        before, after = model(x), model(changed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1])
    assert not torch.allclose(before[:, t + 1], after[:, t + 1])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("greedy", [False, True])
def test_continuing_a_prefix_matches_one_pass_over_the_result(cell, greedy):
    model, x = model_and_images(cell)
    prefix, k = x[:, :25], T - 25
    generated = model.continue_sequences(
        prefix, k, greedy=greedy, generator=torch.Generator().manual_seed(3)
    )
    assert generated.pixels.shape == generated.probs.shape == (4, k)
    full = torch.cat([prefix, generated.pixels], dim=1)
    with torch.no_grad():
        probs = torch.sigmoid(model(full))[:, 25:]
    torch.testing.assert_close(generated.probs, probs, atol=1e-5, rtol=1e-5)
    if greedy:
        assert torch.equal(generated.pixels, (generated.probs > 0.5).long())
    chosen = torch.where(generated.pixels.bool(), probs, 1 - probs)
    torch.testing.assert_close(generated.log_probs(), chosen.log(), atol=1e-5, rtol=1e-5)


def test_sampling_is_reproducible_with_a_generator():
    model, x = model_and_images()

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return model.continue_sequences(x[:, :5], 30, generator=generator).pixels

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_repeats_share_one_prefix_pass(cell):
    model, x = model_and_images(cell)
    prefix = x[:, :20]

    def draw(prefixes, repeats):
        generator = torch.Generator().manual_seed(7)
        return model.continue_sequences(prefixes, 15, generator=generator, repeats=repeats)

    shared, copied = draw(prefix, 3), draw(prefix.repeat_interleave(3, dim=0), 1)
    assert shared.pixels.shape == (12, 15)
    assert torch.equal(shared.pixels, copied.pixels)
    torch.testing.assert_close(shared.probs, copied.probs, atol=1e-6, rtol=1e-5)


def test_generating_from_scratch():
    model, _ = model_and_images()
    generated = model.continue_sequences(torch.zeros(3, 0), 10)
    assert generated.pixels.shape == (3, 10)
    assert set(generated.pixels.unique().tolist()) <= {0, 1}


def test_metrics_are_bce_bits_and_pixel_accuracy():
    model, x = model_and_images()
    loss, values = model.batch_metrics((x.unsqueeze(-1).float(), None), "fit_train")
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, x.float()))
    torch.testing.assert_close(values["bits"], loss * T / math.log(2))
    expected_acc = ((logits > 0).long() == x).float().mean()
    torch.testing.assert_close(values["pixel_acc"], expected_acc)
    # nats per image: the mean per-pixel loss times T is minus the mean log-likelihood
    torch.testing.assert_close(loss * T, -model.log_prob(x).mean(), atol=1e-4, rtol=1e-5)


def test_a_few_adam_steps_fit_a_fixed_batch():
    model, _ = model_and_images(layers=1, lr=1e-2)
    x = torch.zeros(8, T, dtype=torch.long)
    x[:, ::3] = 1  # a periodic pattern the model can learn
    model.train()
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss, _ = model.batch_metrics((x.float(), None), "fit_train")
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_mlp_head_and_bad_settings():
    model = NextPixelPredictor(units=12, head_hidden=[64, 64])
    assert [m.out_features for m in model.head if isinstance(m, torch.nn.Linear)] == [64, 64, 1]
    with pytest.raises(ConfigError, match="task=predict reads one pixel per step; in_features=28"):
        NextPixelPredictor(in_features=28)
    with pytest.raises(ConfigError, match="head_hidden=0 is not allowed"):
        NextPixelPredictor(head_hidden=[0])
