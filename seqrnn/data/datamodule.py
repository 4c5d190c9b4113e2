"""The LightningDataModule that serves binarized MNIST as sequences."""

from __future__ import annotations

import torch

from seqrnn.data.base import SequenceDataModule
from seqrnn.data.mnist import binarize, load_mnist, locate_mnist
from seqrnn.errors import ConfigError, require_choice, require_int
from seqrnn.layout import IMAGE_SIDE

ORDERS = ("pixel", "row")


class MNISTSequenceDataModule(SequenceDataModule):
    """Binarized MNIST read pixel by pixel (``[B, 784, 1]``) or row by row (``[B, 28, 28]``).

    Splits: the first ``N - val_size`` training images train, the last ``val_size`` validate
    (fixed, not shuffled), the test file tests. For MNIST: 55,000 / 5,000 / 10,000.

    Args:
        root: folder of the IDX files (None: ``$SEQRNN_DATA_DIR``, then ``data/mnist``).
        order: ``"pixel"`` (T = H*W steps of 1 pixel) or ``"row"`` (T = H steps of W pixels).
        threshold: a pixel is 1 where ``intensity / 255 > threshold``.
        val_size: images taken from the end of the training file for validation.
        batch_size: training batch size; ``eval_batch_size`` for validation and testing.
        download, verify: see :func:`seqrnn.data.mnist.load_mnist`.
        seed: seed of the per-epoch shuffling.
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
        self.image_shape = (IMAGE_SIDE, IMAGE_SIDE)  # updated from the files in setup()

    @property
    def description(self) -> str:
        """What the reports call this data: the reading order."""
        return f"{self.order} order"

    def settings(self) -> dict[str, float]:
        return {"threshold": self.threshold}

    @property
    def steps(self) -> int:
        """Sequence length T."""
        height, width = self.image_shape
        return height * width if self.order == "pixel" else height

    @property
    def features(self) -> int:
        """Inputs per step F: 1 pixel, or one row of W pixels."""
        return 1 if self.order == "pixel" else self.image_shape[1]

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
        """``[N, H, W]`` -> ``[N, T, F]`` for the configured order (a view, no copy)."""
        n, height, width = images.shape
        return images.reshape(n, height * width, 1) if self.order == "pixel" else images
