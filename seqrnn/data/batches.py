"""Batches of in-memory sequences: the loader every seqrnn DataModule serves.

The whole set lives in memory as uint8 tensors (47 MB for MNIST); a batch is one gather from
those tensors, never a per-sample collation, which would cost more than a small RNN step.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch

# Seeds of the per-epoch shuffles: one stream per (seed, epoch), far apart for nearby seeds.
SEED_STRIDE = 1_000_003


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
        generator = torch.Generator().manual_seed(self.seed * SEED_STRIDE + self.epoch)
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
