"""The type and range of every option of the entry points' configs, in one table.

:func:`problems` checks a composed config against it before Hydra creates anything (see
``experiments._preflight``): a wrong type or a value out of range is one line naming the key,
the value and what is allowed. A test composes every entry point's config and fails for a key
that has no row here, so a new option in ``conf/`` comes with its type.

Why a table and not Hydra's structured configs: those give types, not ranges, and report over
several lines; one row per key here holds both, and the message is the project's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from seqrnn.layout import MAX_HIDDEN_PIXELS

# Runs with more than this many sequences in a batch are refused: MNIST's training split is
# 55,000 images, so a batch larger than it is a typo.
MAX_BATCH = 55_000
DURATION = re.compile(r"\d+:\d\d:\d\d:\d\d")


@dataclass(frozen=True)
class Spec:
    """What an option may hold: ``test(value)`` says whether ``value`` is allowed, ``allowed``
    says it in words ("an integer >= 1"), and ``choices`` lists them when there are few."""

    test: Callable[[Any], bool]
    allowed: str
    choices: tuple[Any, ...] = ()

    def problem(self, key: str, value: Any) -> str | None:
        """One line naming ``key``, ``value`` and what is allowed, or None when it is fine."""
        if self.test(value):
            return None
        if self.choices:
            options = ", ".join(dict.fromkeys(map(str, self.choices)))  # 32 and "32": once
            return f"{key}={value!r} is not allowed; choose one of: {options}"
        return f"{key}={value!r} is not allowed; it must be {self.allowed}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _or_null(spec: Spec, null: bool) -> Spec:
    if not null:
        return spec
    choices = (*spec.choices, None) if spec.choices else ()
    return Spec(lambda v: v is None or spec.test(v), f"{spec.allowed}, or null", choices)


def integer(low: int | None = None, high: int | None = None, null: bool = False) -> Spec:
    """An integer in ``low..high`` (either end open when None)."""
    if low is not None and high is not None:
        words = f"an integer in {low}..{high}"
    elif low is not None:
        words = f"an integer >= {low}"
    elif high is not None:
        words = f"an integer <= {high}"
    else:
        words = "an integer"
    spec = Spec(
        lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high),
        words,
    )
    return _or_null(spec, null)


def number(
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    null: bool = False,
) -> Spec:
    """A number ``> above`` or ``>= at_least``, and ``< below``."""
    bounds = []
    if above is not None:
        bounds.append(f"> {above:g}")
    if at_least is not None:
        bounds.append(f">= {at_least:g}")
    if below is not None:
        bounds.append(f"< {below:g}")
    words = "a number" + (f" {' and '.join(bounds)}" if bounds else "")
    if above is not None and below is not None:
        words = f"a number in ({above:g}, {below:g})"
    elif at_least is not None and below is not None:
        words = f"a number in [{at_least:g}, {below:g})"
    spec = Spec(
        lambda v: (
            _is_number(v)
            and (above is None or v > above)
            and (at_least is None or v >= at_least)
            and (below is None or v < below)
        ),
        words,
    )
    return _or_null(spec, null)


def boolean() -> Spec:
    return Spec(lambda v: isinstance(v, bool), "true or false")


def choice(*options: Any, null: bool = False) -> Spec:
    return _or_null(Spec(lambda v: v in options, "", tuple(options)), null)


def text(null: bool = False) -> Spec:
    return _or_null(Spec(lambda v: isinstance(v, str) and v != "", "a non-empty string"), null)


def list_of(item: Spec, null: bool = False, empty: bool = False) -> Spec:
    each = item.allowed if not item.choices else f"one of {', '.join(map(str, item.choices))}"
    spec = Spec(
        lambda v: isinstance(v, list) and (empty or len(v) > 0) and all(item.test(x) for x in v),
        f"a {'' if empty else 'non-empty '}list, each {each}",
    )
    return _or_null(spec, null)


def batches(at_least: int = 1) -> Spec:
    """Lightning's ``limit_*_batches``: a fraction of the split or a number of batches."""
    zero = at_least == 0
    low = "[0, 1]" if zero else "(0, 1]"
    return Spec(
        lambda v: (
            (_is_int(v) and v >= at_least)
            or (isinstance(v, float) and (v >= 0.0 if zero else v > 0.0) and v <= 1.0)
        ),
        f"a fraction of the split in {low} (e.g. 0.25) or a number of batches >= {at_least}",
    )


def duration(null: bool = True) -> Spec:
    spec = Spec(
        lambda v: isinstance(v, str) and DURATION.fullmatch(v.strip()) is not None,
        "days:hours:minutes:seconds, DD:HH:MM:SS (e.g. 00:02:15:00)",
    )
    return _or_null(spec, null)


def anything(why: str) -> Spec:
    """An option checked elsewhere (``why`` says where), or free by nature."""
    return Spec(lambda v: True, why)


SEED = integer(0, 2**32 - 1)  # what numpy and Lightning's seed_everything take
DEVICE = choice("auto", "cpu", "cuda")
CKPT = text()
MONITOR = text()  # a logged metric: val/loss, val/acc, ...
MODE = choice("min", "max")

# What every command that reads MNIST shares (conf/data/mnist.yaml).
MNIST = {
    "data.root": text(null=True),
    "data.order": choice("pixel", "row", "permuted"),
    "data.permutation_seed": SEED,
    "data.threshold": number(at_least=0, below=1),
    "data.val_size": integer(1, MAX_BATCH - 1),
    "data.batch_size": integer(1, MAX_BATCH),
    "data.eval_batch_size": integer(1, MAX_BATCH),
    "data.download": boolean(),
    "data.verify": boolean(),
    "data.seed": SEED,
}
# The Bayesian sequences (conf/data/dirichlet.yaml).
DIRICHLET = {
    "data.alpha": list_of(number(above=0)),
    "data.period": integer(1),
    "data.segments": integer(1),
    "data.train_size": integer(1),
    "data.val_size": integer(1),
    "data.test_size": integer(1),
    "data.fixed_p": list_of(number(at_least=0), null=True),
    "data.batch_size": integer(1, MAX_BATCH),
    "data.eval_batch_size": integer(1, MAX_BATCH),
    "data.seed": SEED,
}
# A study of a trained model: which checkpoint, on which device.
TRAINED = {"ckpt": CKPT, "device": DEVICE, "seed": SEED}

TRAIN = {
    "seed": SEED,
    "resume": text(null=True),
    "skip_done": boolean(),
    "threads": integer(1, null=True),
    "tf32": boolean(),
    "task": text(),
    "cell": text(),
    "layers": integer(1),
    "units": integer(1),
    **MNIST,
    **DIRICHLET,  # (its data.val_size and batch sizes replace MNIST's: either data may be in use)
    # the model (conf/model/sequence.yaml, conf/task/*.yaml); the library checks the choices
    # that only it knows (a cell's own options) again when it builds the model
    "model.cell": text(),
    "model.units": integer(1),
    "model.layers": integer(1),
    "model.dropout": number(at_least=0, below=1),
    "model.recurrent_init": choice("orthogonal", "default"),
    "model.backend": choice("auto", "torch", "fused"),
    "model.forget_bias": number(),
    "model.gate_bias_init": choice("constant", "chrono"),
    "model.chrono_steps": integer(3),
    "model.optimizer": choice("adam", "adamw", "sgd"),
    "model.lr": number(above=0),
    "model.momentum": number(at_least=0, below=1),
    "model.weight_decay": number(at_least=0),
    "model.lr_schedule": choice("none", "cosine", "step", "plateau", "onecycle"),
    "model.lr_warmup": number(above=0, below=1),
    "model.lr_step_epochs": integer(1),
    "model.lr_gamma": Spec(lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "model.bn_refresh_batches": integer(0),
    "model.head_hidden": Spec(
        lambda v: (
            v is None
            or (_is_int(v) and v >= 1)
            or (isinstance(v, list) and all(_is_int(x) and x >= 1 for x in v))
        ),
        "an integer >= 1 (classify), a list of integers >= 1 (predict), or null",
    ),
    "model.head_batchnorm": boolean(),
    "model.classes": integer(2),
    "model.start_value": number(),
    "model.alpha": list_of(number(above=0)),
    "model.period": integer(1),
    # lightning.Trainer (conf/trainer)
    "trainer.accelerator": choice("auto", "cpu", "gpu", "cuda"),
    "trainer.devices": Spec(
        lambda v: (
            (_is_int(v) and v >= 1)
            or v == "auto"
            or (isinstance(v, list) and all(_is_int(x) and x >= 0 for x in v))
        ),
        "a number of devices >= 1, a list of device indices, or auto",
    ),
    "trainer.strategy": text(),
    "trainer.num_nodes": integer(1),
    "trainer.sync_batchnorm": boolean(),
    "trainer.max_epochs": integer(-1, null=True),
    "trainer.gradient_clip_val": number(at_least=0, null=True),
    "trainer.gradient_clip_algorithm": choice("norm", "value"),
    "trainer.precision": choice(
        "32-true", "32", 32, "bf16-mixed", "16-mixed", "64-true", "64", 64, "bf16-true"
    ),
    "trainer.limit_train_batches": batches(1),
    "trainer.limit_val_batches": batches(0),
    "trainer.limit_test_batches": batches(1),
    "trainer.log_every_n_steps": integer(1),
    "trainer.enable_progress_bar": boolean(),
    "trainer.enable_checkpointing": boolean(),
    "trainer.deterministic": Spec(
        lambda v: isinstance(v, bool) or v == "warn", "true, false or warn"
    ),
    # the callbacks (conf/callbacks/default.yaml); each node (a callback's config, or null to
    # drop it) is checked as a whole by experiments._runs.check_run_settings
    **{
        f"callbacks.{name}": anything("a callback's config, or null")
        for name in (
            "checkpoint",
            "last_checkpoint",
            "early_stopping",
            "lr_monitor",
            "progress_bar",
            "divergence",
            "milestones",
            "timer",
            "share_cores",
        )
    },
    "callbacks.checkpoint.monitor": MONITOR,
    "callbacks.checkpoint.mode": MODE,
    "callbacks.checkpoint.filename": text(),
    "callbacks.checkpoint.save_top_k": integer(-1),
    "callbacks.checkpoint.save_last": boolean(),
    "callbacks.checkpoint.enable_version_counter": boolean(),
    "callbacks.last_checkpoint.every_minutes": number(at_least=0, null=True),
    "callbacks.early_stopping.monitor": MONITOR,
    "callbacks.early_stopping.mode": MODE,
    "callbacks.early_stopping.patience": integer(1),
    "callbacks.lr_monitor.logging_interval": choice("step", "epoch", null=True),
    "callbacks.timer.duration": duration(),
    "callbacks.share_cores.threads": integer(1, null=True),
    "callbacks.share_cores.every_seconds": number(at_least=0.1),
    "callbacks.timer.interval": choice("step", "epoch"),
    "logger.tensorboard.name": text(null=True),
    "logger.tensorboard.version": Spec(lambda v: isinstance(v, str | int), "a string"),
    "logger.tensorboard.default_hp_metric": boolean(),
    "logger.mlflow.experiment_name": text(),
    "logger.mlflow.run_name": text(null=True),
    "logger.mlflow.tracking_uri": text(null=True),
    "logger.mlflow.artifact_location": text(null=True),
    "logger.mlflow.log_model": Spec(lambda v: v in (True, False, "all"), "true, false or all"),
    "logger.csv.save_dir": text(),
    "logger.csv.name": text(null=True),
    "logger.csv.version": Spec(lambda v: isinstance(v, str | int), "a string"),
}

OPTIONS: dict[str, dict[str, Spec]] = {
    "train": TRAIN,
    "evaluate": {
        **MNIST,
        **TRAINED,
        "limit_batches": batches(1),
    },
    "complete": {
        **MNIST,
        **TRAINED,
        "count": integer(1),
        "hidden": integer(1, 783),
        "horizons": list_of(integer(1)),
        "samples": integer(1),
        "shown_samples": integer(0),
        "scratch": integer(0),
        "min_ink": integer(0),
    },
    "inpaint": {
        **MNIST,
        **TRAINED,
        "dataset": text(),
        "count": integer(1),
        "placement": choice("stroke", "uniform"),
        "max_hidden": integer(1, MAX_HIDDEN_PIXELS),
        "max_sequences": integer(1),
        "shown": integer(0),
    },
    "analyze": {
        **MNIST,
        **TRAINED,
        "image": integer(0),
        "count": integer(1, null=True),
        "fixed_p": list_of(number(at_least=0), null=True),
        "shown": integer(0),
    },
    "search": {
        "trials": integer(1),
        "timeout": Spec(lambda v: v is None or (_is_number(v) and v > 0), "seconds > 0, or null"),
        "workers": integer(1),
        "threads": integer(1, null=True),
        "seed": SEED,
        "storage": text(null=True),
        "heartbeat_seconds": integer(1),
        "grace_seconds": integer(2),
        "launcher.name": choice("local", "slurm"),
        "launcher.partition": text(null=True),
        "launcher.cpus_per_task": integer(1),
        "launcher.mem_gb": integer(1),
        "launcher.time_min": integer(1),
        "launcher.requeue": boolean(),
        "launcher.sbatch": list_of(text(), empty=True),
        "launcher.poll_seconds": number(at_least=0.1),
        "search.name": text(),
        "search.metric": text(),
        "search.monitor": MONITOR,
        "search.direction": choice("minimize", "maximize"),
        "search.trials": integer(1),
        "search.startup_trials": integer(0),
        "search.warmup_epochs": integer(0),
        "search.train": list_of(text()),
        "search.space": anything("the search's space: the search checks each entry"),
        "search.enqueue": anything("the trials tried first: the search checks each"),
    },
    "study": {
        "tasks": list_of(text()),
        "cells": list_of(text()),
        "sizes": list_of(text()),
        "threads": integer(1),
        "workers": integer(1),
        "budgets": anything("each size's budget: the study checks them (DD:HH:MM:SS)"),
        "out": text(),
        "docs": text(),
        "pretrained": text(),
        "predictor": text(),
        "train": boolean(),
        "studies": boolean(),
        "dry_run": boolean(),
    },
}

# Keys no user sets: Hydra's own, and the config's wiring.
NOT_OPTIONS = (
    "hydra",
    "paths",
    "_target_",
    "_convert_",
    "_partial_",
    "dirpath",
    "save_dir",
    "default_root_dir",
)


def leaves(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, node)`` for every value of ``node`` that is not itself a mapping."""
    for key in node:
        child = node._get_node(key)
        name = f"{prefix}{key}"
        if isinstance(child, DictConfig) and not child._is_none():
            yield from leaves(child, f"{name}.")
        else:
            yield name, child


def is_wiring(key: str) -> bool:
    return any(part in NOT_OPTIONS for part in key.split("."))


def spec_of(config_name: str, key: str) -> Spec | None:
    """The row for ``key`` (or for a mapping above it, e.g. ``search.space``), if any."""
    table = OPTIONS.get(config_name, {})
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in table:
            return table[".".join(parts[:end])]
    return None


def problems(config_name: str, cfg: DictConfig) -> Iterator[str]:
    """One line for each option of ``cfg`` whose value its row does not allow. Values that
    are interpolations are checked where they point (``model.units: ${units}``: at ``units``)."""
    for key, node in leaves(cfg):
        if is_wiring(key) or node._is_interpolation():
            continue
        spec = spec_of(config_name, key)
        if spec is None:  # a key added on the command line (+key=...): the code that reads it
            continue
        value = node._value() if not isinstance(node, ListConfig) else OmegaConf.to_object(node)
        line = spec.problem(key, value)
        if line is not None:
            yield line
