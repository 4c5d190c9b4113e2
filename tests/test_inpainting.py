"""Exact in-painting: posteriors against brute force, the data sets and their loader."""

import json

import numpy as np
import pytest
import torch

from seqrnn.errors import DataError
from seqrnn.models import NextPixelPredictor
from seqrnn.models.inpainting import brute_force_log_joint, candidates, posteriors
from seqrnn.studies.inpainting import build_set, load_set, run_inpainting, study_metrics


def images_with_hidden(spots, count=3, seed=0):
    """Random binary images with ``spots`` (a list of pixel lists, one per image) hidden."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 2, (count, 784), generator=gen)
    for i, spot in enumerate(spots):
        images[i, spot] = -1
    return images


def scattered(count, k=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(784, generator=gen)[:k].tolist() for _ in range(count)]


CASES = {
    "one_pixel": [[0], [400], [783]],  # first and last pixel included
    "two_by_two": [[100, 101, 128, 129], [700, 701, 728, 729], [0, 1, 28, 29]],
    "three_scattered": scattered(3),
}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("case", CASES)
def test_posterior_equals_brute_force(cell, case):
    torch.manual_seed(0)
    model = NextPixelPredictor(cell=cell, units=10, layers=2).eval()
    images = images_with_hidden(CASES[case])
    for image, posterior in zip(images, posteriors(model, images, max_sequences=20), strict=True):
        fillings, log_joint = brute_force_log_joint(model, image)
        assert torch.equal(posterior.fillings, fillings)
        expected = torch.softmax(log_joint, dim=0)
        torch.testing.assert_close(posterior.probs, expected, atol=1e-5, rtol=0, check_dtype=False)
        # the log-joint differs from log p(x) only by the shared prefix: a constant
        offset = log_joint - posterior.log_joint
        torch.testing.assert_close(offset, offset[:1].expand_as(offset), atol=1e-3, rtol=0)
        assert torch.equal(posterior.map_filling, fillings[log_joint.argmax()])
        marginals = (expected[:, None] * fillings).sum(0)
        torch.testing.assert_close(
            posterior.marginals, marginals, atol=1e-5, rtol=0, check_dtype=False
        )


def test_images_with_different_hidden_counts_in_one_call():
    torch.manual_seed(0)
    model = NextPixelPredictor(units=8).eval()
    images = images_with_hidden([[5], [300, 301, 328, 329], [10, 500]])
    results = posteriors(model, images)
    assert [len(p.positions) for p in results] == [1, 4, 2]
    for image, posterior in zip(images, results, strict=True):
        _, log_joint = brute_force_log_joint(model, image)
        torch.testing.assert_close(posterior.probs, torch.softmax(log_joint, 0), atol=1e-5, rtol=0)


def test_past_only_filling_follows_the_one_step_predictions():
    torch.manual_seed(0)
    model = NextPixelPredictor(units=8).eval()
    (image,) = images_with_hidden([[200, 260]], count=1)
    (posterior,) = posteriors(model, image[None])
    chosen = posterior.past_only_filling()
    # brute force: fill pixel 200 from its past, then 260 from its past (200 filled)
    filled = image.clamp(min=0)
    with torch.no_grad():
        filled[200] = int(torch.sigmoid(model(filled[None])[0, 200]) > 0.5)
        filled[260] = int(torch.sigmoid(model(filled[None])[0, 260]) > 0.5)
    assert chosen.tolist() == [int(filled[200]), int(filled[260])]


def test_candidates_count_in_binary():
    assert candidates(2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


@pytest.fixture
def binary_images():
    images = torch.zeros(30, 784, dtype=torch.uint8)
    images[:, 14 * 28 + 10 : 14 * 28 + 14] = 1  # a short stroke in row 14
    return images, torch.arange(30) % 10


@pytest.mark.parametrize(("kind", "k"), [("one_pixel", 1), ("two_by_two", 4)])
def test_built_sets_hide_spots_next_to_strokes(binary_images, kind, k):
    images, labels = binary_images
    built = build_set(images, labels, kind, count=20, seed=3)
    assert built.images.dtype == torch.int8 and built.images.shape == (20, 784)
    assert (built.hidden_counts == k).all()
    seen = built.images >= 0
    assert torch.equal(built.images[seen], built.targets[seen])
    for row in built.hidden:
        r, c = divmod(int(row.nonzero()[0]), 28)
        assert 12 <= r <= 15 and 8 <= c <= 14  # within a pixel of the stroke
        if k == 4:
            spots = row.nonzero().flatten().tolist()
            assert spots == [r * 28 + c, r * 28 + c + 1, (r + 1) * 28 + c, (r + 1) * 28 + c + 1]
    again = build_set(images, labels, kind, count=20, seed=3)
    assert torch.equal(again.images, built.images)


def test_sets_round_trip_through_npz(binary_images, tmp_path):
    built = build_set(*binary_images, "two_by_two", count=5)
    loaded = load_set(built.save(tmp_path / "set.npz"))
    assert torch.equal(loaded.images, built.images)
    assert torch.equal(loaded.targets, built.targets)
    assert torch.equal(loaded.labels, built.labels)


def test_a_users_npy_of_28x28_images_loads(tmp_path):
    images = np.zeros((4, 28, 28), dtype=np.int64)
    images[:, 3, 3:6] = -1
    np.save(tmp_path / "mine.npy", images)
    loaded = load_set(tmp_path / "mine.npy", max_hidden=3)
    assert loaded.images.shape == (4, 784) and loaded.targets is None
    assert (loaded.hidden_counts == 3).all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros((3, 100)), r"images has shape \[3, 100\]; expected \[N, 784\] or \[N, 28, 28\]"),
        (np.full((2, 784), 2), r"images\[0, 0\] = 2; pixels must be 0, 1, or -1 \(hidden\)"),
        (np.zeros((2, 784)), "image 0 has no hidden pixel"),
        (-np.ones((2, 784)), "image 0 has 784 hidden pixels; the cap is max_hidden=12"),
    ],
)
def test_bad_sets_are_named(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(DataError, match=message):
        load_set(tmp_path / "bad.npy")


def test_missing_or_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_set(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable"):
        load_set(tmp_path / "junk.npz")


def test_study_metrics_against_direct_computation(binary_images):
    torch.manual_seed(0)
    model = NextPixelPredictor(units=8).eval()
    images, labels = binary_images
    images = images.clone()
    images[:, 300:320] = torch.randint(0, 2, (30, 20))  # something to be unsure about
    dataset = build_set(images, labels, "two_by_two", count=6, placement="uniform", seed=2)
    found = posteriors(model, dataset.images)
    means, _ = study_metrics(model, dataset, found)
    truth = dataset.targets.long()
    with torch.no_grad():
        log_p = model.log_prob(truth).double()
        per_pixel = -torch.nn.functional.binary_cross_entropy_with_logits(
            model(truth), truth.float(), reduction="none"
        )
    masses, past, correct = [], [], 0
    for i, image in enumerate(dataset.images):
        fillings, log_joint = brute_force_log_joint(model, image)
        positions = (image < 0).nonzero().flatten()
        t = int((fillings == truth[i, positions]).all(1).nonzero())
        masses.append(float(torch.softmax(log_joint, 0)[t]))
        past.append(float(per_pixel[i, positions].double().sum().exp()))
        correct += int((fillings[log_joint.argmax()] == truth[i, positions]).sum())
    assert means["truth_ce_image"] == pytest.approx(float(-log_p.mean() / 784), rel=1e-5)
    assert means["truth_mass"] == pytest.approx(float(np.mean(masses)), abs=1e-5)
    assert means["past_truth_mass"] == pytest.approx(float(np.mean(past)), abs=1e-5)
    assert means["map_pixel_acc"] == pytest.approx(correct / 24)
    assert means["map_ce_image"] <= means["truth_ce_image"] + 1e-9  # the MAP is at least as likely


def test_study_writes_everything(binary_images, tmp_path):
    torch.manual_seed(0)
    model = NextPixelPredictor(units=8).eval()
    dataset = build_set(*binary_images, "one_pixel", count=5)
    report = run_inpainting(model, dataset, tmp_path, dataset_name="one_pixel", shown=2)
    assert json.loads((tmp_path / "inpaint.json").read_text()) == report
    arrays = np.load(tmp_path / "posterior.npz")
    assert arrays["fillings_probs"].shape == (5, 2)
    np.testing.assert_allclose(arrays["fillings_probs"].sum(1), 1, atol=1e-9)
    assert torch.equal(load_set(tmp_path / "dataset.npz").images, dataset.images)
    assert {"figures/successes.png", "figures/failures.png", "figures/future_gain.png"} == set(
        report["figures"]
    )
    assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in report["figures"])
