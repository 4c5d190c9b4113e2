"""What every Hydra entry point shares: argument checks before Hydra runs, and clean errors.

Kept free of torch and Lightning imports so that a mistyped option is answered in a second.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml
from omegaconf import DictConfig

from seqrnn.layout import LAST_CHECKPOINT, RUN_CONFIG, RUN_OVERRIDES

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXIT_USAGE = 2

# Where data-parallel launchers put a process's rank: torchrun and Lightning's own launcher
# (RANK, LOCAL_RANK, NODE_RANK), srun in a SLURM job of several tasks (SLURM_PROCID).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def process_rank() -> int:
    """This process's rank among a data-parallel job's (0: the first, or the only one)."""
    return max(int(os.environ.get(key, "0")) for key in RANK_VARIABLES)


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` as one line on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


# OSErrors that are the user's situation, not a bug: a full disk, a path that cannot be written.
USER_OS_ERRORS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`~seqrnn.errors.SeqRNNError` raised inside (or wrapped by Hydra's
    ``instantiate``), and an ``OSError`` of the user's disk or paths (full, read-only, a file
    where a folder should be), into one line on stderr and exit status 2; other errors pass
    through."""
    from seqrnn.errors import SeqRNNError
    from seqrnn.files import describe_os_error

    # A log file on a full disk: Python's logging would print a traceback for every line.
    logging.raiseExceptions = False
    try:
        yield
    except Exception as err:  # noqa: BLE001 - re-raised below unless it is the user's error
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, SeqRNNError):
            if isinstance(cause, OSError) and cause.errno in USER_OS_ERRORS:
                fail(describe_os_error(cause))
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        fail(str(cause))


def quiet_lightning() -> None:
    """Drop console noise that tells a user nothing about their run."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()  # an advert for a cloud service
    )
    # Lightning's own use of a torch API deprecated in torch 2.13; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # SLURM installed on this machine, a run outside any SLURM job: nothing to act on
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")


def _parse(token: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(token)
    except Exception:  # noqa: BLE001 - Hydra reports bad syntax itself, with its own message
        return None


def _overrides(argv: list[str]) -> list[tuple[str, object]]:
    """``(token, parsed override)`` for each ``key=value`` argument (flags are skipped)."""
    parsed = []
    for token in argv:
        if token.startswith("-") or "=" not in token:
            continue
        override = _parse(token)
        if override is not None:
            parsed.append((token, override))
    return parsed


def config_dirs(argv: list[str], conf_dir: Path = CONF_DIR) -> list[Path]:
    """``conf_dir``, then the folders ``hydra.searchpath=[file://DIR, ...]`` adds (a project's
    own configs, e.g. a ``cell/<name>.yaml`` of its own cell: docs/extending.md)."""
    dirs = [conf_dir]
    for _, override in _overrides(argv):
        if override.key_or_group == "hydra.searchpath":
            value = override.value()
            for entry in value if isinstance(value, list) else [value]:
                if str(entry).startswith("file://"):
                    dirs.append(Path(str(entry).removeprefix("file://")))
    return dirs


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The options of a config group: the names of ``conf/<group>/*.yaml``."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


# Hydra's flags that pick what a command does: one at a time (Hydra's own error is a traceback).
MODE_FLAGS = {
    "-m": "--multirun",
    "--multirun": "--multirun",
    "-c": "--cfg",
    "--cfg": "--cfg",
    "-i": "--info",
    "--info": "--info",
}


def check_modes(argv: list[str]) -> None:
    """Fail with one line when the command asks for two of a sweep, ``--cfg`` and ``--info``."""
    modes = list(dict.fromkeys(MODE_FLAGS[token] for token in argv if token in MODE_FLAGS))
    if len(modes) > 1:
        fail(
            f"{' and '.join(modes)} cannot go together: give one of them (to see a sweep's "
            "config, --cfg job with one value per option)"
        )


def check_group_choices(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Fail with one line for ``group=option`` where no ``conf/<group>/<option>.yaml`` exists
    (in ``conf_dir`` or a folder of ``hydra.searchpath``).

    Hydra would say so too, but over a dozen lines with its search path; this names the bad
    value and the options in one. Sweeps (``cell=gru,foo``) are checked value by value.
    """
    from hydra.core.override_parser.types import Glob

    dirs = config_dirs(argv, conf_dir)
    for token, override in _overrides(argv):
        group = override.key_or_group
        folders = [d / group for d in dirs if (d / group).is_dir()]
        if (
            override.is_delete()
            or not folders
            or (group.startswith("hydra") and group != "hydra/launcher")
        ):
            continue
        options = sorted({option for d in dirs for option in group_options(group, d)})
        if group == "hydra/launcher":  # and the launchers Hydra's plugins bring
            options = sorted({*options, *plugin_launchers()})
        if isinstance(override.value(), Glob):  # glob(bayes_*): each option it matches
            values = override.value().filter(options)
            if not values:
                fail(f"'{token}' matches no {group}; choose from: {', '.join(options)}")
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        elif isinstance(override.value(), list):  # logger=[tensorboard,mlflow]: several at once
            values = [str(value) for value in override.value()]
        else:
            values = [override.get_value_element_as_str()]
        for value in values:
            if value != "null" and value not in options:
                fail(
                    f"{group}={value} is not a known {group} (in '{token}'); "
                    f"choose one of: {', '.join(options)}"
                )


def plugin_launchers() -> list[str]:
    """The ``hydra/launcher`` options Hydra's installed plugins register (basic, joblib, ...)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # discovers the plugins, which register their configs
    launchers = ConfigStore.instance().repo.get("hydra", {}).get("launcher", {})
    return [name.removesuffix(".yaml") for name in launchers]


def expand_resume(argv: list[str], run_file: str = LAST_CHECKPOINT) -> list[str]:
    """``resume=DIR`` -> the overrides DIR was made with, then ``argv``, writing into DIR.

    Later overrides win, so ``resume=DIR trainer.max_epochs=20`` extends a finished run (a
    resumed run is trained even when it has results: ``skip_done=false``).
    """
    tokens = [t for t in argv if t.startswith("resume=")]
    if not tokens:
        return argv
    run_dir = Path(tokens[-1].split("=", 1)[1]).expanduser()
    overrides_file = run_dir / RUN_OVERRIDES
    if overrides_file.is_file() and not (run_dir / run_file).is_file():
        fail(
            f"resume={run_dir} has no {run_file}: the run stopped before its first save (at "
            "the end of epoch 1, or after callbacks.last_checkpoint.every_minutes of "
            "training), so there is nothing to go on from; start it again without resume="
        )
    if not (run_dir / run_file).is_file() or not overrides_file.is_file():
        fail(
            f"resume={run_dir} is not a run dir to resume: it needs {run_file} and "
            f"{RUN_OVERRIDES} (give the dir that `python -m experiments.train` printed)"
        )
    given = {override.key_or_group for _, override in _overrides(argv)}
    changed = changed_model_keys(argv, run_dir / RUN_CONFIG)
    if changed:
        fail(
            f"resume={run_dir} cannot change {', '.join(changed)}: a resumed run keeps the "
            "model its checkpoint holds; train a new run for another task, cell or shape"
        )
    original = yaml.safe_load(overrides_file.read_text()) or []
    kept = [
        t
        for t in original
        if (p := _parse(t)) is not None and p.key_or_group not in given | {"resume", "skip_done"}
    ]
    extra = [] if "skip_done" in given else ["skip_done=false"]
    pinned = pinned_recipe(run_dir / RUN_CONFIG)
    return with_overrides([*kept, *pinned], argv, [*extra, f"hydra.run.dir='{run_dir}'"])


# What a resumed run cannot change: the model its last.ckpt holds, and what its inputs are.
# (A size= that changes the shape is refused by the checkpoint's own check, in one line.)
MODEL_SHAPE_KEYS = ("task", "cell", "units", "layers", "data.order", "data.permutation_seed")


def changed_model_keys(argv: list[str], config_file: Path) -> list[str]:
    """The ``MODEL_SHAPE_KEYS`` that ``argv`` sets to another value than the run's config has
    (the same value is fine: Lightning's launcher starts its other ranks with the whole
    command line)."""
    if not config_file.is_file():
        return []
    config = yaml.safe_load(config_file.read_text()) or {}
    changed = []
    for _, override in _overrides(argv):
        key = override.key_or_group
        if key not in MODEL_SHAPE_KEYS:
            continue
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if str(node) != override.get_value_element_as_str():
            changed.append(key)
    return sorted(changed)


# What a recipe sets (conf/recipe): the settings a resumed run keeps from its own config.
RECIPE_KEYS = (
    "model",
    "data.batch_size",
    "trainer.max_epochs",
    "trainer.gradient_clip_val",
    "trainer.precision",
    "callbacks.checkpoint.monitor",
    "callbacks.checkpoint.mode",
    "callbacks.early_stopping",
)


def pinned_recipe(config_file: Path) -> list[str]:
    """Overrides that give a resumed run the recipe it was started with (``RECIPE_KEYS`` as its
    ``.hydra/config.yaml`` holds them), even where ``conf/recipe`` has changed since."""
    if not config_file.is_file():
        return []
    config = yaml.safe_load(config_file.read_text()) or {}
    pinned = []
    for key in RECIPE_KEYS:
        node: Any = config
        for part in key.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if key == "model":
            leaves = {f"model.{k}": v for k, v in node.items() if not str(k).startswith("_")}
        else:
            leaves = {key: node} if node != {} else {}
        pinned += [
            f"{name}={_override_value(value)}"
            for name, value in leaves.items()
            if not (isinstance(value, str) and value.startswith("${"))
        ]
    return pinned


def _override_value(value: Any) -> str:
    """``value`` in Hydra's override grammar: null, true, 0.015, 'val/loss', [64,64], {k:v}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_override_value(v)}" for k, v in value.items()) + "}"
    return "'" + str(value).replace("'", "\\'") + "'"


def name_the_size(argv: list[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """``units=``/``layers=`` without ``size=`` pick the size they name, so that its recipe
    (``conf/recipe/<task>/<cell>-<size>.yaml``) comes with it: ``units=32`` is ``size=1x32``
    (the other dimension from the default size); a shape without a preset (``layers=2 units=48``,
    or a sweep over units or layers) is ``size=custom``, which trains the task's recipe.
    With ``size=`` given, ``units=``/``layers=`` reshape that preset and keep its recipe."""
    given = {override.key_or_group: override for _, override in _overrides(argv)}
    if "size" in given or not {"units", "layers"} & given.keys():
        return argv
    if any(given[key].is_sweep_override() for key in ("units", "layers") if key in given):
        return with_overrides([], argv, ["size=custom"])
    default_size = default_choice("size", conf_dir=conf_dir)
    default = yaml.safe_load((conf_dir / "size" / f"{default_size}.yaml").read_text())
    shape = {
        key: given[key].get_value_element_as_str() if key in given else str(default[key])
        for key in ("layers", "units")
    }
    size = f"{shape['layers']}x{shape['units']}"
    size = size if (conf_dir / "size" / f"{size}.yaml").is_file() else "custom"
    return with_overrides([], argv, [f"size={size}"])


# Hydra's flags that take a value ("--info" takes one of its topics when one follows).
FLAGS_WITH_VALUE = {
    "--cfg",
    "-c",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--package",
    "-p",
    "--experimental-rerun",
}
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def with_overrides(before: list[str], argv: list[str], after: list[str]) -> list[str]:
    """``argv``'s overrides with ``before`` ahead and ``after`` behind them, then its flags
    (``--cfg job``, ``-m``, ``--info``) with their values: Hydra's parser takes the overrides as
    one run of words, so nothing may be added behind a flag."""
    overrides, flags = [], []
    tokens = iter(argv)
    for token in tokens:
        if not token.startswith("-"):
            overrides.append(token)
            continue
        flags.append(token)
        if token in FLAGS_WITH_VALUE:
            flags.append(next(tokens, ""))
        elif token in ("--info", "-i"):
            topic = next(tokens, None)
            if topic in INFO_TOPICS:
                flags.append(topic)
            elif topic is not None:
                overrides.append(topic)
    return [*before, *overrides, *after, *flags]


def default_choice(group: str, config: str = "train", conf_dir: Path = CONF_DIR) -> str:
    """The option ``conf/<config>.yaml`` picks for ``group`` when the command line does not."""
    defaults = yaml.safe_load((conf_dir / f"{config}.yaml").read_text())["defaults"]
    return next(entry[group] for entry in defaults if isinstance(entry, dict) and group in entry)


def prepare_argv(argv: list[str], required: dict[str, str] | None = None) -> list[str]:
    """The checks and expansions above, in order; returns the argv to hand to Hydra.

    ``required`` maps keys the command cannot run without to what they are, e.g.
    ``{"ckpt": "the task=predict model to complete with"}``. ``recipe=null`` is read as
    ``~recipe`` (no recipe: the library defaults), which Hydra cannot take for an interpolated
    default.
    """
    argv = ["~recipe" if token == "recipe=null" else token for token in argv]
    check_modes(argv)
    check_group_choices(argv)
    for key, what in (required or {}).items():
        if not any(token.startswith(f"{key}=") for token in argv):
            fail(f"{key}=<run dir or .ckpt> is required: {what}")
    return name_the_size(expand_resume(argv))


def launch(
    main: Callable[[], Any],
    config_name: str,
    required: dict[str, str] | None = None,
    check: Callable[[DictConfig], None] | None = None,
    new_dirs: list[Path] | None = None,
) -> None:
    """Run a Hydra ``main`` on this process's command line, checked and expanded by
    :func:`prepare_argv` (``required``: see there) and then, job by job, by
    :func:`experiments._preflight.check_command` (``check``: the entry point's own checks;
    ``new_dirs``: receives the folders Hydra will make above the run dir), before Hydra creates
    anything."""
    from experiments._preflight import Refused, check_command
    from experiments._ranks import rank_overrides

    argv = prepare_argv(sys.argv[1:], required)
    argv = with_overrides([], argv, rank_overrides(argv))
    try:
        check_command(CONF_DIR, config_name, argv, check, new_dirs)
    except Refused as refused:
        fail(str(refused))
    sys.argv = [sys.argv[0], *argv]
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C before training started or after it ended (while training, LastCheckpoint
        # saves and ends the run itself): nothing was trained that a resume could go on from
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None


def entry_point(
    config_name: str,
    run: Callable[[DictConfig], Any],
    required: dict[str, str] | None = None,
    check: Callable[[DictConfig], None] | None = None,
) -> None:
    """What every entry point's ``__main__`` does: check the command line (``required``,
    ``check``: see :func:`launch`), compose ``conf/<config_name>.yaml`` with it, call
    ``run(cfg)``, and turn a user's error into one line and exit 2.

    A run refused by a check that needs the data or a checkpoint read (after Hydra made its
    dir) leaves no dir behind: Hydra's files are removed with it. Hydra names the job (and its
    log file) after the module that defined ``run``."""
    import hydra

    started = time.time() - 1.0  # file times have a coarser clock than time.time() on some
    new_dirs: list[Path] = []  # the folders above the run dir that Hydra will make

    @functools.wraps(run)
    def task(cfg: DictConfig) -> Any:
        from experiments._preflight import remove_if_unused

        try:
            with user_errors():
                return run(cfg)
        except SystemExit as exit_:
            if exit_.code == EXIT_USAGE and first_process():
                remove_if_unused(Path(str(cfg.paths.output_dir)), started, new_dirs)
            raise
        except Exception as err:
            # The launcher reports rank 0's error; the others' would be lost (e.g. a rank
            # that failed first, which rank 0 reports only as a peer that went away).
            if rank := process_rank():
                print(f"error on rank {rank}: {type(err).__name__}: {err}", file=sys.stderr)
            raise

    launch(
        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task),
        config_name,
        required,
        check,
        new_dirs,
    )


class OneLineParser(argparse.ArgumentParser):
    """argparse for the entry points without Hydra: a bad argument is one ``error:`` line and
    exit 2, as everywhere else (argparse's own prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def first_process() -> bool:
    """Whether this is the first (or only) process of the job: data-parallel launchers start
    the others with their rank in the environment. Only the first holds the run dir's lock and
    tidies up after a refused run, whichever rank happens to start first."""
    return process_rank() == 0


def trained_data(cfg: DictConfig, trained_on: dict[str, Any], **fixed: Any):
    """The DataModule of ``cfg.data``, set up, reading the images as the checkpoint's model was
    trained on them (``trained_on``: its order, threshold and validation size) unless ``fixed``
    says otherwise. Where the files are comes from ``cfg``."""
    from hydra.utils import instantiate

    from seqrnn.training.checkpoints import TRAINED_DATA_KEYS

    settings = {key: trained_on[key] for key in TRAINED_DATA_KEYS if key in trained_on}
    datamodule = instantiate(cfg.data, **{**settings, **fixed})
    datamodule.setup()
    return datamodule


def reading_order(trained_on: dict[str, Any]):
    """``[784]`` the image pixel a model trained in permuted order reads at each step (its
    data's permutation, from the seed its checkpoint keeps); None for pixel order."""
    if trained_on.get("order", "pixel") != "permuted":
        return None
    from seqrnn.data.datamodule import DEFAULT_PERMUTATION_SEED, pixel_permutation
    from seqrnn.layout import IMAGE_SIDE

    seed = trained_on.get("permutation_seed", DEFAULT_PERMUTATION_SEED)
    return pixel_permutation(IMAGE_SIDE * IMAGE_SIDE, seed)


def print_study_outputs(out_dir: Path, report: dict, results: list[str]) -> None:
    """Where a study's files went: its dir, the ``results`` files, figures, TensorBoard."""
    names = ", ".join(Path(f).name for f in report["figures"])
    print(f"output dir:  {out_dir}")
    print(f"results:     {', '.join(str(out_dir / name) for name in results)}")
    print(f"figures:     {out_dir / 'figures'}  ({names})")
    print(f"tensorboard: tensorboard --logdir {out_dir / 'tensorboard'}")


def check_trained_job(cfg: DictConfig) -> None:
    """The checks every job on a trained model shares, before anything is written: the device
    is there, and the checkpoint (a run dir, a ``.ckpt``, ``pretrained:NAME``) exists."""
    from experiments._preflight import check_device
    from seqrnn.training.checkpoints import resolve_checkpoint

    check_device("device", cfg.device)
    resolve_checkpoint(cfg.ckpt)
