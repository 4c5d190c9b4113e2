"""The LightningDataModule that serves binarized MNIST as sequences.

The whole binarized set lives in memory as uint8 tensors (47 MB for MNIST); a batch is one gather
from those tensors, never a per-sample collation, which would cost more than a small RNN step.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch

from seqrnn.data.mnist import binarize, load_mnist, locate_mnist
from seqrnn.errors import ConfigError, require_choice, require_int

ORDERS = ("pixel", "row")
# The splits of the final evaluation, in the order of ``eval_dataloaders``.
EVAL_SPLITS = ("train", "val", "test")


class EpochShuffle:
    """A fresh permutation of ``n`` indices per epoch, reproducible from ``seed`` and the epoch.

    Lightning calls ``set_epoch`` on a loader's ``sampler`` at every epoch start, resumed runs
    included, so a resumed run sees the same batches it would have seen without the interruption.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """Indices ``[n]`` of this epoch."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=generator)


class SequenceBatches:
    """An iterable of ``(x, y)`` batches sliced from in-memory tensors.

    The loader is resumable: Lightning keeps its :meth:`state_dict` (the epoch and the batches
    handed out so far) in every checkpoint and hands it back on resume, so a run resumed from a
    mid-epoch checkpoint goes on with the next batch of the same order.

    Under data-parallel training each process (``rank`` of ``world_size``) takes every
    ``world_size``-th example, as PyTorch's DistributedSampler does: shuffled training shards
    drop the few examples that would make them unequal (every process must take the same number
    of steps); evaluation shards repeat a few instead, so that every example is seen.

    Args:
        images: ``[N, T, F]`` uint8 in {0, 1}.
        labels: ``[N]`` int64.
        batch_size: examples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: draw a new order each epoch (see :class:`EpochShuffle`).
        rank, world_size: this process's shard.
    Yields:
        x: ``[B, T, F]`` float32, y: ``[B]`` int64.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        # Lightning looks for DataLoader's `sampler` (to call set_epoch) and `batch_sampler`.
        self.sampler = EpochShuffle(len(images), seed) if shuffle else None
        self.batch_sampler = None
        self._served = 0  # batches the current pass has handed out
        self._resume_at: tuple[int | None, int] | None = None  # (epoch, position) to go on from

    @property
    def shard_size(self) -> int:
        """Examples this process iterates over in an epoch."""
        n, world = len(self.images), self.world_size
        return n // world if self.sampler is not None else -(-n // world)

    def __len__(self) -> int:
        full, rest = divmod(self.shard_size, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def covered(self, batches: int) -> int:
        """Distinct examples that the first ``batches`` batches of every process cover."""
        per_process = min(batches * self.batch_size, self.shard_size)
        return min(len(self.images), per_process * self.world_size)

    def _indices(self) -> torch.Tensor | None:
        """This epoch's example order for this process; None: all examples in order."""
        order = self.sampler.order() if self.sampler is not None else None
        if self.world_size == 1:
            return order
        n = len(self.images)
        if order is None:
            order = torch.arange(n)
        size = self.shard_size * self.world_size
        if size > n:  # evaluation: repeat a few to even the shards
            order = torch.cat([order, order[: size - n]])
        return order[self.rank : size : self.world_size]

    def state_dict(self) -> dict[str, Any]:
        """Where the current pass stands: ``{"epoch", "position"}`` (batches handed out).

        Lightning prefetches nothing from a loader that has a length, so when it writes a
        checkpoint every batch handed out has been trained on."""
        return {"epoch": self._epoch(), "position": self._served}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next pass of the same epoch start at ``state["position"]``."""
        self._resume_at = (state["epoch"], int(state["position"]))

    def first(self, batches: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``batches`` batches of this epoch's order, leaving the pass's position (and
        so the checkpoints) alone: for reading training batches between steps, e.g. to refresh
        BatchNorm statistics before validation."""
        return itertools.islice(self._pass(track=False), batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._pass(track=True)

    def _epoch(self) -> int | None:
        return self.sampler.epoch if self.sampler is not None else None

    def _start(self) -> int:
        """The batch a tracked pass starts at: a restored position of this same epoch, else 0."""
        resume_at, self._resume_at = self._resume_at, None
        if resume_at is None or resume_at[0] != self._epoch():
            return 0
        return min(resume_at[1], len(self))

    def _pass(self, track: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A generator: the epoch and the start are read at the first batch, after Lightning
        # has set the epoch and restored the position.
        start = self._start() if track else 0
        order = self._indices()
        if track:
            self._served = start
        for b in range(start, len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.shard_size)
            if order is None:  # contiguous slice: a view, no gather
                x, y = self.images[lo:hi], self.labels[lo:hi]
            else:
                idx = order[lo:hi]
                x, y = self.images[idx], self.labels[idx]
            if track:
                self._served = b + 1
            yield x.float(), y


def shard_of(trainer: L.Trainer | None) -> dict[str, int]:
    """A process's place among the data-parallel processes of ``trainer`` (``rank`` and
    ``world_size`` for :class:`SequenceBatches`)."""
    if trainer is None:
        return {"rank": 0, "world_size": 1}
    return {"rank": trainer.global_rank, "world_size": trainer.world_size}


class SequenceDataModule(L.LightningDataModule):
    """What every seqrnn DataModule is: ``train``, ``val`` and ``test`` splits of ``[N, T, F]``
    uint8 sequences with ``[N]`` labels in memory (``self.splits``, filled by ``setup``), served
    by :class:`SequenceBatches`.

    Its :meth:`state_dict` holds the training loader's position, which Lightning keeps in every
    checkpoint: a run resumed from a mid-epoch checkpoint goes on with the next batch. (Lightning
    also stores a stateful loader's state itself, but restores it only when the loader is made
    after the checkpoint is read; the one-cycle schedule asks for the epoch length, and so
    for the loader, before that.)

    Subclasses set ``batch_size``, ``eval_batch_size`` and ``seed`` and describe their data with
    ``family``, ``order``, ``features`` and ``description``.
    """

    family: str
    order: str
    batch_size: int
    eval_batch_size: int
    seed: int

    def __init__(self) -> None:
        super().__init__()
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_loader: SequenceBatches | None = None
        self._train_position: dict[str, Any] | None = None  # restored before the loader exists

    @property
    def features(self) -> int:
        """Inputs per step F."""
        raise NotImplementedError

    @property
    def description(self) -> str:
        """What reports call this data."""
        raise NotImplementedError

    def train_dataloader(self) -> SequenceBatches:
        loader = SequenceBatches(
            *self.splits["train"], self.batch_size, shuffle=True, seed=self.seed, **self._shard()
        )
        if self._train_position is not None:
            loader.load_state_dict(self._train_position)
            self._train_position = None
        self._train_loader = loader
        return loader

    def val_dataloader(self) -> SequenceBatches:
        return self._eval_loader("val")

    def test_dataloader(self) -> list[SequenceBatches]:
        """The final evaluation: unshuffled loaders over the whole train, val and test splits, in
        ``EVAL_SPLITS`` order (a model's ``test_step`` names its metrics by that order)."""
        return [self._eval_loader(split) for split in EVAL_SPLITS]

    def state_dict(self) -> dict[str, Any]:
        loader = self._train_loader
        return {"train_position": loader.state_dict()} if loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position = state_dict.get("train_position")
        if position is None:
            return
        if self._train_loader is not None:
            self._train_loader.load_state_dict(position)
        else:
            self._train_position = position

    def _eval_loader(self, split: str) -> SequenceBatches:
        return SequenceBatches(*self.splits[split], self.eval_batch_size, **self._shard())

    def _shard(self) -> dict[str, int]:
        return shard_of(self.trainer)


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
        self.image_shape = (28, 28)  # updated from the files in setup()

    @property
    def description(self) -> str:
        """What the reports call this data: the reading order."""
        return f"{self.order} order"

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
