"""The DataModule protocol: what training, reports and studies read of any seqrnn data."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from seqrnn.data.batches import SequenceBatches, shard_of

# The splits of the final evaluation, in the order of ``test_dataloader``.
EVAL_SPLITS = ("train", "val", "test")


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
    ``family`` (which models read it), ``order`` (how a sequence reads the data), ``features``
    (inputs per step), ``description`` and :meth:`settings`. Their loaders carry ``sampler``
    (whose ``set_epoch`` Lightning calls) and ``batch_sampler = None``, the attributes Lightning
    looks for on a DataLoader.
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

    def settings(self) -> dict[str, Any]:
        """Settings beyond ``description`` that tell runs on this data apart (TensorBoard's
        HPARAMS tab); none by default."""
        return {}

    def order_settings(self) -> dict[str, Any]:
        """What, beside ``order``, fixes how a sequence reads the data (``results.json`` keeps
        it beside the order); none by default."""
        return {}

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
