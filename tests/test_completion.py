"""The completion study: the masked set, the table, the picked examples, the written outputs."""

import itertools
import json

import pytest
import torch

from seqrnn.errors import ConfigError
from seqrnn.models import NextPixelPredictor
from seqrnn.studies.completion import (
    Completions,
    check_horizons,
    complete,
    horizon_table,
    make_masked_set,
    pick_examples,
    run_completion,
    sample_disagreement,
)


@pytest.fixture
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 2, (50, 784), generator=gen), torch.arange(50) % 10


def test_masked_set_draws_distinct_images_reproducibly(images):
    x, labels = images
    masked = make_masked_set(x, labels, count=10, hidden=300, seed=4)
    assert masked.images.shape == (10, 784) and masked.visible == 484
    assert masked.prefixes.shape == (10, 484)
    assert len(set(masked.index.tolist())) == 10
    assert torch.equal(masked.images, x[masked.index])
    assert torch.equal(masked.labels, labels[masked.index])
    again = make_masked_set(x, labels, count=10, hidden=300, seed=4)
    other = make_masked_set(x, labels, count=10, hidden=300, seed=5)
    assert torch.equal(again.index, masked.index) and not torch.equal(other.index, masked.index)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 51}, "count=51 is not allowed; the split has 50 images"),
        ({"count": 5, "hidden": 784}, "hidden=784 is not allowed; it must be between 1 and 783"),
        ({"count": 0}, "count=0 is not allowed"),
    ],
)
def test_masked_set_bad_settings(images, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_masked_set(*images, **kwargs)


def test_horizons_beyond_the_hidden_part_are_named():
    assert check_horizons([28, 1, 10, 300], 300) == [1, 10, 28, 300]
    with pytest.raises(ConfigError, match=r"n=400 is not allowed.*\(hidden=300\)"):
        check_horizons([1, 400], 300)


def test_complete_shapes_and_ground_truth(images):
    torch.manual_seed(0)
    model = NextPixelPredictor(units=8)
    masked = make_masked_set(*images, count=3, hidden=20)
    done = complete(
        model, masked, horizon=20, samples=4, generator=torch.Generator().manual_seed(0)
    )
    assert done.samples.shape == done.sample_log_probs.shape == (3, 4, 20)
    assert done.greedy.shape == done.truth.shape == done.truth_log_probs.shape == (3, 20)
    assert torch.equal(done.truth, masked.images[:, 764:])
    # the ground truth's log-probs summed with the prefix's are the image's log_prob
    with torch.no_grad():
        prefix_part = model.log_prob(masked.images) - done.truth_log_probs.sum(1)
        only_prefix = model.log_prob(masked.images[:, :764])
    torch.testing.assert_close(prefix_part, only_prefix, atol=1e-3, rtol=1e-5)


def hand_made(samples, truth, sample_log_probs=None):
    samples, truth = torch.tensor(samples), torch.tensor(truth)
    logp = (
        torch.zeros(samples.shape) if sample_log_probs is None else torch.tensor(sample_log_probs)
    )
    return Completions(samples, logp, samples[:, 0], -torch.ones(truth.shape), truth)


def test_table_by_hand():
    # one image, two samples, horizon 3
    done = hand_made(
        samples=[[[1, 0, 1], [0, 0, 1]]],
        truth=[[1, 1, 1]],
        sample_log_probs=[[[-0.1, -0.2, -0.3], [-0.5, -0.6, -0.7]]],
    )
    rows = horizon_table(done, [1, 3])
    assert rows[0] == pytest.approx(
        {"n": 1, "samples_ce": 0.3, "truth_ce": 1.0, "greedy_acc": 1.0, "samples_acc": 0.5}
    )
    assert rows[1] == pytest.approx(
        {"n": 3, "samples_ce": 0.4, "truth_ce": 1.0, "greedy_acc": 2 / 3, "samples_acc": 3 / 6}
    )


def test_examples_are_picked_by_the_numbers():
    ink = [1] * 4 + [0] * 4
    done = hand_made(
        samples=[
            [ink, ink, ink],  # 0: perfect, and has ink
            [[1 - v for v in ink]] * 3,  # 1: everything wrong
            [[1] * 8, [0] * 8, ink],  # 2: samples disagree the most
            [[0] * 8] * 3,  # 3: perfect on an empty truth: not a success
        ],
        truth=[ink, ink, ink, [0] * 8],
    )
    assert pick_examples(done, min_ink=4) == {"success": 0, "failure": 1, "high_variance": 2}


def test_disagreement_is_the_mean_pairwise_hamming_distance():
    samples = torch.randint(0, 2, (5, 6, 30), generator=torch.Generator().manual_seed(1))
    brute = torch.tensor(
        [
            sum((a != b).sum().item() for a, b in itertools.combinations(image, 2)) / 15
            for image in samples
        ]
    )
    torch.testing.assert_close(sample_disagreement(samples), brute, check_dtype=False)


def test_study_writes_table_figures_summary_and_tensorboard(images, tmp_path):
    torch.manual_seed(0)
    model = NextPixelPredictor(units=8)
    report = run_completion(
        model,
        *images,
        tmp_path,
        count=6,
        hidden=30,
        horizons=(1, 5, 30),
        samples=3,
        shown_samples=2,
        scratch=8,
        seed=1,
        checkpoint="model.ckpt",
    )
    saved = json.loads((tmp_path / "completion.json").read_text())
    assert saved == report
    assert [row["n"] for row in saved["table"]] == [1, 5, 30]
    assert set(saved["examples"]) == {"success", "failure", "high_variance"}
    for path in saved["figures"]:
        assert (tmp_path / path).read_bytes()[:4] == b"\x89PNG"
    assert {"figures/horizons.png", "figures/scratch.png"} <= set(saved["figures"])
    summary = (tmp_path / "summary.md").read_text()
    assert "| 30 |" in summary and "figures/example_failure.png" in summary
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_every_scratch_image_is_drawn_when_the_count_is_not_a_multiple_of_8():
    from seqrnn.models import NextPixelPredictor
    from seqrnn.studies.completion import scratch_figure

    torch.manual_seed(0)
    figure = scratch_figure(NextPixelPredictor(units=4).eval(), 10)
    drawn = [ax for ax in figure.axes if ax.images]
    assert len(drawn) == 10  # 8 in the first row, 2 in the second
