"""Binarization, the fixed split and the batches the DataModule serves."""

import numpy as np
import pytest
import torch
from conftest import TINY_SIZES, TINY_VAL

from seqrnn.data import EVAL_SPLITS, MNISTSequenceDataModule, binarize
from seqrnn.data.datamodule import DEFAULT_PERMUTATION_SEED, pixel_permutation
from seqrnn.errors import ConfigError


def make_dm(root, **kwargs) -> MNISTSequenceDataModule:
    kwargs = {"val_size": TINY_VAL, "batch_size": 16, "verify": False, "download": False, **kwargs}
    dm = MNISTSequenceDataModule(str(root), **kwargs)
    dm.setup()
    return dm


def test_binarize_threshold_is_strictly_greater_than_intensity_over_255():
    images = np.array([[[0, 25, 26, 255]]], dtype=np.uint8)
    assert binarize(images).tolist() == [[[0, 0, 1, 1]]]  # 25/255 = 0.098, 26/255 = 0.102
    assert binarize(np.array([[[127, 128]]], dtype=np.uint8), 0.5).tolist() == [[[0, 1]]]
    assert binarize(images).dtype == torch.uint8


def test_binarize_agrees_with_the_formula_on_every_intensity():
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    for threshold in (0.0, 0.1, 0.37, 0.9):
        expected = (images.astype(np.float64) / 255 > threshold).astype(np.uint8)
        assert np.array_equal(binarize(images, threshold).numpy(), expected)


def test_binarize_rejects_a_threshold_outside_0_1():
    with pytest.raises(ConfigError, match=r"data.threshold=1.5 .* \[0, 1\)"):
        binarize(np.zeros((1, 2, 2), dtype=np.uint8), 1.5)


def test_split_takes_validation_from_the_end_of_the_training_file(tiny_mnist, tiny_arrays):
    dm = make_dm(tiny_mnist)
    sizes = {split: len(dm.splits[split][0]) for split in EVAL_SPLITS}
    assert sizes == {
        "train": TINY_SIZES["train"] - TINY_VAL,
        "val": TINY_VAL,
        "test": TINY_SIZES["test"],
    }
    val_images, val_labels = dm.splits["val"]
    expected = binarize(tiny_arrays["train_images"][-TINY_VAL:]).reshape(TINY_VAL, 784, 1)
    assert torch.equal(val_images, expected)
    assert val_labels.tolist() == tiny_arrays["train_labels"][-TINY_VAL:].tolist()


@pytest.mark.parametrize(("order", "shape"), [("pixel", (784, 1)), ("row", (28, 28))])
def test_batches_have_the_order_shape_and_content(tiny_mnist, tiny_arrays, order, shape):
    dm = make_dm(tiny_mnist, order=order, eval_batch_size=32)
    assert (dm.steps, dm.features) == shape
    x, y = next(iter(dm.test_dataloader()[EVAL_SPLITS.index("test")]))
    assert x.shape == (32, *shape) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64
    # Pixel t of the sequence is pixel (t // 28, t % 28) of the image: row-major reading.
    image = binarize(tiny_arrays["test_images"][:32]).float()
    assert torch.equal(x.reshape(32, 28, 28), image)
    assert y.tolist() == tiny_arrays["test_labels"][:32].tolist()


def test_training_batches_cover_the_split_once_per_epoch_in_a_new_order(tiny_mnist):
    dm = make_dm(tiny_mnist, order="row", batch_size=12)
    loader = dm.train_dataloader()
    n = TINY_SIZES["train"] - TINY_VAL  # 80 = 6 * 12 + 8
    assert len(loader) == 7

    def epoch_order(epoch):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert [len(y) for _, y in batches] == [12] * 6 + [8]
        x = torch.cat([b[0] for b in batches])
        # Recover each row's index in the split by matching images.
        train_x = dm.splits["train"][0].float()
        return [int((train_x == row).flatten(1).all(1).nonzero()[0]) for row in x]

    first, again, second = epoch_order(0), epoch_order(0), epoch_order(1)
    assert sorted(first) == list(range(n))
    assert first == again
    assert first != second and sorted(second) == list(range(n))


def test_final_evaluation_loaders_are_whole_unshuffled_splits(tiny_mnist):
    dm = make_dm(tiny_mnist, eval_batch_size=7)
    loaders = dm.test_dataloader()
    assert [len(loader.images) for loader in loaders] == [len(dm.splits[s][0]) for s in EVAL_SPLITS]
    for split, loader in zip(EVAL_SPLITS, loaders, strict=True):
        assert loader.sampler is None
        assert torch.equal(torch.cat([y for _, y in loader]), dm.splits[split][1])


def test_val_size_must_leave_training_images(tiny_mnist):
    with pytest.raises(ConfigError, match=r"data.val_size=100 .* smaller than the 100"):
        make_dm(tiny_mnist, val_size=100)


def test_permuted_order_reads_every_split_in_one_fixed_order_of_its_seed(tiny_mnist):
    pixel = make_dm(tiny_mnist)
    permuted = make_dm(tiny_mnist, order="permuted", permutation_seed=7)
    assert (permuted.steps, permuted.features) == (784, 1)
    assert permuted.description == "permuted order (seed 7)"
    assert permuted.order_settings() == {"permutation_seed": 7}
    # which pixel each step reads, found by brute force: image i has pixel i alone on
    unit = torch.eye(784).reshape(784, 28, 28)
    order = permuted._as_sequences(unit)[:, :, 0].argmax(dim=0)
    assert sorted(order.tolist()) == list(range(784)) and order.tolist() != list(range(784))
    # the same order for every image of every split, labels untouched
    for split in EVAL_SPLITS:
        assert torch.equal(permuted.splits[split][0], pixel.splits[split][0][:, order])
        assert torch.equal(permuted.splits[split][1], pixel.splits[split][1])
    # the seed alone decides it: the same seed again agrees (whatever the shuffling seed),
    # another seed does not
    again = make_dm(tiny_mnist, order="permuted", permutation_seed=7, seed=3)
    other = make_dm(tiny_mnist, order="permuted", permutation_seed=8)
    assert torch.equal(again.splits["val"][0], permuted.splits["val"][0])
    assert not torch.equal(other.splits["val"][0], permuted.splits["val"][0])


def test_the_default_permutation_is_the_one_torch_draws_after_manual_seed_5544():
    # how the permuted-MNIST papers' code draws it: the first randperm of the seeded global RNG
    state = torch.get_rng_state()
    try:
        torch.manual_seed(5544)
        reference = torch.randperm(784)
    finally:
        torch.set_rng_state(state)
    assert torch.equal(pixel_permutation(784, DEFAULT_PERMUTATION_SEED), reference)
    assert DEFAULT_PERMUTATION_SEED == 5544


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "column"}, "data.order='column' is not allowed; choose one of: pixel, row, "),
        ({"permutation_seed": -1}, "data.permutation_seed=-1 is not allowed"),
        ({"batch_size": 0}, "data.batch_size=0 is not allowed"),
    ],
)
def test_bad_settings_are_named(tiny_mnist, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MNISTSequenceDataModule(str(tiny_mnist), **kwargs)


@pytest.mark.integration
def test_real_mnist_split_sizes(real_mnist):
    dm = MNISTSequenceDataModule(str(real_mnist), download=False)
    dm.setup()
    assert {s: tuple(dm.splits[s][0].shape) for s in EVAL_SPLITS} == {
        "train": (55000, 784, 1),
        "val": (5000, 784, 1),
        "test": (10000, 784, 1),
    }
    # Binarized at 0.1, about 17.5% of MNIST pixels are on.
    assert 0.16 < dm.splits["test"][0].float().mean() < 0.19
