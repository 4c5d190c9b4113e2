"""What every sequence model shares: the input affine, the recurrent stack, the optimizer."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from seqrnn.data import EVAL_SPLITS
from seqrnn.errors import ConfigError, require_choice, require_int
from seqrnn.nn import RecurrentStack
from seqrnn.nn.batchnorm import refresh_batchnorm_statistics


@dataclass(frozen=True)
class MilestoneSpec:
    """Which metric a task's milestones watch, which way is better, and the thresholds."""

    metric: str  # a logged validation metric, e.g. "val/acc"
    mode: str  # "max": reached when metric >= threshold; "min": when metric <= threshold
    thresholds: tuple[float, ...]

    def key(self, threshold: float) -> str:
        """The name of one milestone in ``results.json``, e.g. ``"val/acc>=0.98"``."""
        return f"{self.metric}{'>=' if self.mode == 'max' else '<='}{threshold:g}"

    def reached(self, value: float, threshold: float) -> bool:
        return value >= threshold if self.mode == "max" else value <= threshold


@dataclass(frozen=True)
class Comparison:
    """How the report and the study's results page compare the runs of a task: a ``results.json``
    (and ``evaluation.json``) key, its title, which way is better, and the milestone whose
    minutes are shown beside it."""

    metric: str  # e.g. "test_acc"
    title: str  # e.g. "test accuracy"
    higher_is_better: bool
    milestone: str  # a key of results.json's milestones, e.g. "val/acc>=0.98"


# The jobs that take a trained model (the entry points of the same names): a task lists those
# that apply to it in SequenceModel.jobs.
JOBS = ("evaluate", "analyze", "complete", "inpaint")

# task name -> its LightningModule class: every subclass of SequenceModel that names a task
# registers itself here when its module is imported (the name is stored in every checkpoint,
# with the class's import path, so a task of one's own is found again from its checkpoint).
TASKS: dict[str, type[SequenceModel]] = {}


def tasks_for(job: str) -> tuple[str, ...]:
    """The registered tasks whose models ``job`` (one of :data:`JOBS`) takes."""
    return tuple(name for name, model in TASKS.items() if job in model.jobs)


def class_path(model: type) -> str:
    """``module.Class``: what a checkpoint keeps to import a task's class again."""
    return f"{model.__module__}.{model.__qualname__}"


OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "step", "plateau", "onecycle")


def one_cycle(step: int, total: int, warmup: float) -> float:
    """The one-cycle learning-rate factor at ``step`` of ``total``: linear from 1/25 to 1 over
    the first ``warmup`` of the steps, then a half cosine from 1 to 0 at the last step."""
    warm = max(1, int(warmup * total))
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * step / warm
    progress = min(1.0, (step - warm) / max(1, total - 1 - warm))
    return 0.5 * (1 + math.cos(math.pi * progress))


class SequenceModel(L.LightningModule):
    """Base LightningModule: an input affine map (``in_features`` -> ``units``) ->
    :class:`RecurrentStack`.

    Subclasses add a head, set :attr:`task` and implement :meth:`batch_metrics` (the loss and
    what else to log for one batch); this class logs them as ``train/<name>``, ``val/<name>`` and,
    in the final evaluation (``trainer.test`` on the DataModule's ``test_dataloader``),
    ``final/<split>_<name>``. The task name is stored in every checkpoint (``checkpoint["task"]``)
    so a checkpoint of one task is never loaded as another.

    A subclass that sets :attr:`task` is registered in :data:`TASKS` under that name, with what
    it declares: :attr:`data_family`, :attr:`milestones`, the :attr:`jobs` that take its trained
    models, and its :attr:`comparison` for reports (docs/extending.md, "A task of one's own").

    Args:
        in_features: inputs per step F (1 for pixels, 28 for rows).
        cell, units, layers, dropout, recurrent_init, forget_bias, gate_bias_init,
            chrono_steps: the stack's; see :class:`~seqrnn.nn.RecurrentStack`.
        optimizer: ``"adam"`` (``weight_decay`` is an L2 term in the gradient),
            ``"adamw"`` (``weight_decay`` shrinks the weight matrices directly, decoupled from
            Adam's scaling; biases and normalization parameters are not decayed) or ``"sgd"``
            (with ``momentum``, Nesterov when momentum > 0).
        lr, weight_decay: the optimizer's.
        lr_schedule: ``"none"``, ``"cosine"`` (to 0 over ``max_epochs``), ``"step"`` (times
            ``lr_gamma`` every ``lr_step_epochs``) or ``"plateau"`` (times ``lr_gamma`` when
            ``val/loss`` stalls for ``lr_step_epochs``) or ``"onecycle"`` (per step: a linear
            warm-up from ``lr / 25`` to ``lr`` over the first ``lr_warmup`` of the run's steps,
            then a cosine down to ~0 at ``max_epochs``).
        bn_refresh_batches: before each validation, recompute BatchNorm statistics over this
            many training batches (see :mod:`seqrnn.nn.batchnorm`); 0 (the default, for models
            without BatchNorm) keeps the running ones.
        backend: the stack's kernels, ``"auto"``, ``"torch"`` or ``"fused"`` (see
            :mod:`seqrnn.nn.stack`); it changes speed, not results or checkpoints.
    """

    task: ClassVar[str] = ""
    # the data family it reads (the DataModule's ``family``): "mnist" or "dirichlet"
    data_family: ClassVar[str] = "mnist"
    # what seqrnn.callbacks.milestones.Milestones records for it (None: nothing)
    milestones: ClassVar[MilestoneSpec | None] = None
    # the jobs of JOBS that take its trained models (experiments.evaluate, analyze, ...)
    jobs: ClassVar[tuple[str, ...]] = ("evaluate",)
    # what the report's table of shipped runs compares (None: no such table)
    comparison: ClassVar[Comparison | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("task"):
            return  # an intermediate class: no task of its own
        unknown = [job for job in cls.jobs if job not in JOBS]
        if unknown:
            raise ConfigError(
                f"task {cls.task!r} ({class_path(cls)}) lists job {unknown[0]!r}; jobs are "
                f"{', '.join(JOBS)}"
            )
        known = TASKS.get(cls.task)
        # the same class imported again (a reload) replaces itself; another class may not
        if known is not None and class_path(known) != class_path(cls):
            raise ConfigError(
                f"task {cls.task!r} of {class_path(cls)} is taken by {class_path(known)}; "
                "give the new task another name"
            )
        TASKS[cls.task] = cls

    def __init__(
        self,
        in_features: int = 1,
        cell: str = "gru",
        units: int = 128,
        layers: int = 1,
        dropout: float = 0.0,
        recurrent_init: str = "orthogonal",
        forget_bias: float = 1.0,
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: str = "none",
        lr_step_epochs: int = 5,
        lr_gamma: float = 0.5,
        bn_refresh_batches: int = 0,
        backend: str = "auto",
        gate_bias_init: str = "constant",
        chrono_steps: int = 784,
        lr_warmup: float = 0.1,
    ) -> None:
        super().__init__()
        # Collects the arguments of this __init__ and of the subclass's that called it.
        self.save_hyperparameters()
        require_choice("optimizer", optimizer, OPTIMIZERS)
        require_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        if not lr > 0:
            raise ConfigError(f"lr={lr!r} is not allowed; it must be > 0")
        if not 0.0 < lr_warmup < 1.0:
            raise ConfigError(f"lr_warmup={lr_warmup!r} is not allowed; it must be in (0, 1)")
        # The stack checks cell, units and layers; build it before anything sized by them.
        self.stack = RecurrentStack(
            cell=cell,
            input_size=units,
            units=units,
            layers=layers,
            dropout=dropout,
            recurrent_init=recurrent_init,
            forget_bias=forget_bias,
            backend=backend,
            gate_bias_init=gate_bias_init,
            chrono_steps=chrono_steps,
        )
        self.input_proj = nn.Linear(require_int("in_features", in_features, 1), units)

    # Keys of the stages a metric can be computed for: fitting, and the final evaluation of each
    # split. (Usable as ModuleDict keys, which "train" is not: it is a Module attribute.)
    METRIC_STAGES = ("fit_train", "fit_val", *(f"final_{split}" for split in EVAL_SPLITS))

    def batch_metrics(self, batch, stage: str) -> tuple[torch.Tensor, dict[str, Any]]:
        """The loss of ``batch`` and ``{name: value}`` to log (a tensor or a torchmetrics Metric
        updated on this batch), ``stage`` being one of :attr:`METRIC_STAGES`."""
        raise NotImplementedError

    def _log_batch(self, batch, stage: str, prefix: str, **log_kwargs) -> torch.Tensor:
        loss, values = self.batch_metrics(batch, stage)
        # Epoch means weighted by batch size: exact when the last batch is smaller; averaged
        # over data-parallel processes (equal shards) when there are several.
        for name, value in {"loss": loss, **values}.items():
            self.log(
                f"{prefix}{name}",
                value,
                batch_size=len(batch[0]),
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                **log_kwargs,
            )
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._log_batch(batch, "fit_train", "train/")
        self.log("train/batch_loss", loss, on_step=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._log_batch(batch, "fit_val", "val/", prog_bar=True)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Final evaluation: loader ``k`` of ``trainer.test`` is split ``EVAL_SPLITS[k]``."""
        split = EVAL_SPLITS[dataloader_idx]
        self._log_batch(batch, f"final_{split}", f"final/{split}_", add_dataloader_idx=False)

    def encode(self, x: torch.Tensor, state=None):
        """``x [B, T, F]`` -> top-layer outputs ``[B, T, H]`` and the final state. Every pass of
        the models goes through the stack with the input map (see :class:`RecurrentStack`)."""
        return self.stack(x, state, input_proj=self.input_proj)

    def encode_step(self, x_t: torch.Tensor, state=None):
        """One step: ``x_t [B, F]`` -> top-layer output ``[B, H]`` and the new state."""
        return self.stack.step(x_t, state, input_proj=self.input_proj)

    def encode_final_states(self, x: torch.Tensor, lengths: torch.Tensor):
        """The state after each sequence's own ``lengths[i]`` steps of ``x [B, T, F]``."""
        return self.stack.final_states(x, lengths, input_proj=self.input_proj)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if hp.optimizer == "adam":
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            # Decay only the matrices: shrinking the gate biases would undo their chrono spans,
            # and BatchNorm's scale and shift are not what overfits.
            params = [p for p in self.parameters() if p.requires_grad]
            groups = [
                {"params": [p for p in params if p.dim() >= 2]},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ]
            optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=hp.lr,
                momentum=hp.momentum,
                nesterov=hp.momentum > 0,
                weight_decay=hp.weight_decay,
            )
        if hp.lr_schedule == "none":
            return optimizer
        if hp.lr_schedule == "onecycle":
            # A LambdaLR keeps only its step count in checkpoints, not the plan: a run resumed
            # with more epochs re-plans the cycle over its new length (OneCycleLR would stop
            # with an error past its old total).
            total = max(2, int(self.trainer.estimated_stepping_batches))
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, partial(one_cycle, total=total, warmup=hp.lr_warmup)
            )
            schedule = {"scheduler": scheduler, "interval": "step"}
            return {"optimizer": optimizer, "lr_scheduler": schedule}
        if hp.lr_schedule == "cosine":
            epochs = max(1, self.trainer.max_epochs or 1)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        elif hp.lr_schedule == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, hp.lr_step_epochs, hp.lr_gamma)
        else:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=hp.lr_gamma, patience=hp.lr_step_epochs
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"},
        }

    def on_validation_epoch_start(self) -> None:
        # Validation, the checkpoints saved after it and the final test all use these statistics.
        loader = self.trainer.train_dataloader
        if self.trainer.sanity_checking or loader is None or not self.hparams.bn_refresh_batches:
            return
        n = self.hparams.bn_refresh_batches
        # seqrnn's loaders read the first batches without moving the position that
        # mid-epoch checkpoints record; any other iterable is simply iterated
        first = getattr(loader, "first", None)
        batches = first(n) if first is not None else itertools.islice(loader, n)
        refresh_batchnorm_statistics(self, batches, lambda batch: self(batch[0].to(self.device)))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["task"] = self.task
        checkpoint["task_class"] = class_path(type(self))
