"""The LightningDataModule that serves binarized MNIST as sequences."""

from __future__ import annotations

import torch

from seqrnn.data.base import SequenceDataModule
from seqrnn.data.mnist import binarize, load_mnist, locate_mnist
from seqrnn.errors import ConfigError, require_choice, require_int
from seqrnn.layout import IMAGE_SIDE

ORDERS = ("pixel", "row", "permuted")


# The permuted order's default seed: torch.randperm(784) drawn right after torch.manual_seed(5544)
# is the permutation of the long-memory RNN papers' permuted-MNIST code (LEM's psMNIST script
# seeds it so and names exprnn, dtriv and scoRNN as using the same seed).
DEFAULT_PERMUTATION_SEED = 5544


def pixel_permutation(pixels: int, seed: int) -> torch.Tensor:
    """``[pixels]`` the fixed order in which ``order="permuted"`` reads an image's pixels: a
    random permutation drawn from ``seed`` alone (the same on every machine and in every split):
    ``torch.randperm(pixels)`` of a generator seeded with ``seed``, as the global one draws it
    right after ``torch.manual_seed(seed)``."""
    return torch.randperm(pixels, generator=torch.Generator().manual_seed(seed))


def describe_order(order: str, permutation_seed: int = DEFAULT_PERMUTATION_SEED) -> str:
    """What reports call MNIST read in ``order``: ``pixel order``, ``permuted order (seed 5)``."""
    return f"permuted order (seed {permutation_seed})" if order == "permuted" else f"{order} order"


class MNISTSequenceDataModule(SequenceDataModule):
    """Binarized MNIST read pixel by pixel (``[B, 784, 1]``), row by row (``[B, 28, 28]``), or
    pixel by pixel in one fixed random order (``[B, 784, 1]``, permuted MNIST).

        Splits: the first ``N - val_size`` training images train, the last ``val_size`` validate
        (fixed, not shuffled), the test file tests. For MNIST: 55,000 / 5,000 / 10,000.

        Args:
            root: folder of the IDX files (None: ``$SEQRNN_DATA_DIR``, then ``data/mnist``).
            order: ``"pixel"`` (T = H*W steps of 1 pixel), ``"row"`` (T = H steps of W pixels) or
                ``"permuted"`` (T = H*W steps of 1 pixel, in the order of
                :func:`pixel_permutation` of ``permutation_seed``).
            threshold: a pixel is 1 where ``intensity / 255 > threshold``.
            val_size: images taken from the end of the training file for validation.
            batch_size: training batch size; ``eval_batch_size`` for validation and testing.
            download, verify: see :func:`seqrnn.data.mnist.load_mnist`.
            seed: seed of the per-epoch shuffling.
            permutation_seed: the seed of the permuted order's permutation (kept in checkpoints,
                so that a later job reads the pixels in the order the model was trained on).
    """

    family = "mnist"

    def __init__(
        self,
        root: str | None = None,
        order: str = "pixel",
        threshold: float = 0.1,
        val_size: int = 5000,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        download: bool = True,
        verify: bool = True,
        seed: int = 0,
        permutation_seed: int = DEFAULT_PERMUTATION_SEED,
    ) -> None:
        super().__init__()
        # Kept in every checkpoint, so later jobs read the images as the model was trained on.
        self.save_hyperparameters()
        self.root = root
        self.order = require_choice("data.order", order, ORDERS)
        self.threshold = threshold
        self.val_size = require_int("data.val_size", val_size, 1)
        self.batch_size = require_int("data.batch_size", batch_size, 1)
        self.eval_batch_size = require_int("data.eval_batch_size", eval_batch_size, 1)
        self.download, self.verify, self.seed = download, verify, seed
        self.permutation_seed = require_int("data.permutation_seed", permutation_seed, 0)
        self.image_shape = (IMAGE_SIDE, IMAGE_SIDE)  # updated from the files in setup()

    @property
    def description(self) -> str:
        """What the reports call this data: the reading order."""
        return describe_order(self.order, self.permutation_seed)

    def settings(self) -> dict[str, float]:
        return {"threshold": self.threshold, **self.order_settings()}

    def order_settings(self) -> dict[str, int]:
        return {"permutation_seed": self.permutation_seed} if self.order == "permuted" else {}

    @property
    def steps(self) -> int:
        """Sequence length T."""
        height, width = self.image_shape
        return height if self.order == "row" else height * width

    @property
    def features(self) -> int:
        """Inputs per step F: 1 pixel, or one row of W pixels."""
        return self.image_shape[1] if self.order == "row" else 1

    def prepare_data(self) -> None:
        # Runs on one process per node: fetch missing files once before setup() reads them.
        locate_mnist(self.root, download=self.download, verify=self.verify)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = load_mnist(self.root, download=self.download, verify=self.verify)
        self.image_shape = tuple(arrays.train_images.shape[1:])
        n_train = len(arrays.train_images)
        if self.val_size >= n_train:
            raise ConfigError(
                f"data.val_size={self.val_size} is not allowed; it must be smaller than the "
                f"{n_train} training images"
            )
        train_x = self._as_sequences(binarize(arrays.train_images, self.threshold))
        test_x = self._as_sequences(binarize(arrays.test_images, self.threshold))
        train_y = torch.from_numpy(arrays.train_labels.astype("int64"))
        test_y = torch.from_numpy(arrays.test_labels.astype("int64"))
        cut = n_train - self.val_size
        self.splits = {
            "train": (train_x[:cut], train_y[:cut]),
            "val": (train_x[cut:], train_y[cut:]),
            "test": (test_x, test_y),
        }

    def _as_sequences(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, H, W]`` -> ``[N, T, F]`` for the configured order (a view, no copy; the
        permuted order gathers a copy)."""
        n, height, width = images.shape
        if self.order == "row":
            return images
        pixels = images.reshape(n, height * width, 1)
        if self.order == "permuted":
            pixels = pixels[:, pixel_permutation(height * width, self.permutation_seed)]
        return pixels
