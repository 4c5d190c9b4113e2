"""Checks of a whole command before Hydra creates anything.

Hydra makes the run dir (and writes ``.hydra/`` and a log file into it) before an entry point's
own code runs, so a check there leaves an empty dir behind, or rewrites the files of the dir it
refuses. Here the config of every job the command would run is composed first, with Hydra's own
compose API and the same overrides, and checked: Hydra's errors (a mistyped key, a value its
parser cannot read) become one line with a hint, every option's type and range is checked
(``experiments._options``), the run dir must be writable and not in use, and the entry point
adds checks of its own (``check=`` of :func:`experiments._cli.entry_point`). A failure is one
``error:`` line and exit status 2, with nothing written.
"""

from __future__ import annotations

import difflib
import errno
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments._options import OPTIONS, problems
from seqrnn.layout import HYDRA_DIR, LOCK_FILE

# Hydra's flags that print something instead of running a job: nothing to check.
PRINTING_FLAGS = {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--resolve"}
MULTIRUN_FLAGS = {"-m", "--multirun"}


class Refused(Exception):
    """A command that must not run: its message is the one line the user sees."""


Check = Callable[[DictConfig], None]


def check_command(
    config_dir: Path,
    config_name: str,
    argv: list[str],
    check: Check | None = None,
    new_dirs: list[Path] | None = None,
) -> None:
    """Compose each job of the command ``argv`` as Hydra would and check it (the module
    docstring); raise :class:`Refused` with one line for the first problem. ``new_dirs``, when
    given, receives the folders above a run's dir that do not exist yet (Hydra will make them):
    a run refused later removes them again (:func:`remove_if_unused`)."""
    from experiments._cli import first_process
    from seqrnn.errors import SeqRNNError

    if PRINTING_FLAGS & set(argv):
        return
    overrides = [token for token in argv if not token.startswith("-")]
    multirun = bool(MULTIRUN_FLAGS & set(argv))
    with composing(config_dir, config_name):
        for cfg in job_configs(config_dir, config_name, overrides, multirun):
            for line in problems(config_name, cfg):
                raise Refused(line)
            run_dir = planned_dir(cfg, multirun)
            if run_dir is not None:
                check_writable(run_dir, "hydra.sweep.dir" if multirun else "hydra.run.dir")
                if new_dirs is not None and not multirun:
                    new_dirs.extend(p for p in run_dir.absolute().parents if not p.exists())
                # (the other ranks of a data-parallel run write into the dir rank 0 holds)
                if config_name == "train" and first_process():
                    check_not_in_use(run_dir)
            data_root = OmegaConf.select(cfg, "data.root", default=None)
            if data_root:
                download = OmegaConf.select(cfg, "data.download", default=False)
                check_data_root(Path(str(data_root)).expanduser(), bool(download))
            if check is not None:
                try:
                    check(cfg)
                except SeqRNNError as err:
                    raise Refused(str(err)) from None


@contextmanager
def composing(config_dir: Path, config_name: str) -> Iterator[None]:
    """Hydra's compose API on ``config_dir``, with the job named as the entry point names it."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir), version_base="1.3", job_name=config_name):
            yield
    finally:
        GlobalHydra.instance().clear()


def job_configs(
    config_dir: Path, config_name: str, overrides: list[str], multirun: bool
) -> Iterator[DictConfig]:
    """The composed config of every job: one for a run; for a sweep, one per combination of its
    values (the command line's and its preset's ``hydra.sweeper.params``), as Hydra's basic
    sweeper splits them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = [parse(parser, token) for token in overrides]
    if not multirun:
        yield compose(config_dir, config_name, overrides)
        return
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = compose(config_dir, config_name, fixed)
    params = OmegaConf.select(base, "hydra.sweeper.params", default=None) or {}
    swept = [f"{key}={value}" for key, value in params.items()]
    for batch in BasicSweeper.split_arguments(
        [parse(parser, token) for token in [*swept, *overrides]], None
    ):
        for job in batch:
            yield compose(config_dir, config_name, list(job))


def parse(parser: Any, token: str) -> Any:
    """One override, or :class:`Refused` saying how to quote a value Hydra cannot read."""
    try:
        return parser.parse_override(token)
    except Exception as err:  # noqa: BLE001 - Hydra's parser raises its own exception types
        key, _, value = token.partition("=")
        raise Refused(
            f"cannot read the override {token!r} ({first_line(err)}); a value with spaces, "
            f"brackets or other special characters needs quotes inside the override: "
            f"'{key}=\"{value}\"'"
        ) from None


def compose(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    """The job's config as Hydra composes it (its ``hydra`` node included), or
    :class:`Refused` for an override Hydra refuses, with the nearest key it meant."""
    from hydra import compose as hydra_compose
    from hydra.core.hydra_config import HydraConfig

    try:
        cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception as err:  # noqa: BLE001 - Hydra wraps every composition error its own way
        raise Refused(composition_problem(config_dir, config_name, err)) from None
    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in the run dir's pattern
    return cfg


def composition_problem(config_dir: Path, config_name: str, err: Exception) -> str:
    """Hydra's composition error in one line: a key that is not there gets the nearest valid
    key or group; anything else gets Hydra's own lines joined."""
    cause = str(err.__cause__ or "")
    missing = re.search(r"Could not override '([^']+)'", str(err))
    if missing and "not in struct" in cause:
        key = missing.group(1)
        owner = group_option_with(config_dir, key)
        if owner:  # a key of another option of its group: the option is what is missing
            return f"{key} is a setting of {owner}; choose it first ({owner} {key}=...)"
        known = sorted(known_keys(config_dir, config_name))
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        return (
            f"{key} is not an option of experiments.{config_name}; {hint}(a key of your own: "
            f"+{key}=...)"
        )
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def group_option_with(config_dir: Path, key: str) -> str | None:
    """``group=option`` whose config file sets ``key`` (``launcher.cpus_per_task``:
    ``launcher=slurm``), where ``key`` starts with the name of a config group; else None."""
    group, _, rest = key.partition(".")
    if not rest or not (config_dir / group).is_dir():
        return None
    for path in sorted((config_dir / group).glob("*.yaml")):
        absent = object()
        if OmegaConf.select(OmegaConf.load(path), rest, default=absent) is not absent:
            return f"{group}={path.stem}"
    return None


def known_keys(config_dir: Path, config_name: str) -> set[str]:
    """Every option of ``config_name``, the mappings above them (``trainer``, ``model``) and
    the config groups (``size``, ``cell``)."""
    keys = {p.name for p in config_dir.iterdir() if p.is_dir()}
    for key in OPTIONS.get(config_name, {}):
        parts = key.split(".")
        keys.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return keys


def first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def planned_dir(cfg: DictConfig, multirun: bool) -> Path | None:
    """The dir Hydra will create for this job (the sweep's dir for a sweep), or None when only
    a running Hydra can fill in its pattern."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception:  # noqa: BLE001 - e.g. an interpolation of the runtime's own values
        return None
    return Path(str(value)).expanduser() if value else None


def check_writable(path: Path, key: str) -> None:
    """``path`` is a folder that exists or can be made, and files can be written in it: its
    nearest existing folder is tried with a temporary folder, removed at once."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise Refused(f"{key}={path} cannot be made: {existing} is a file, not a folder")
    try:
        Path(tempfile.mkdtemp(dir=existing, prefix=".seqrnn-check-")).rmdir()
    except OSError as err:
        reason = "no space left" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror
        raise Refused(f"{key}={path} cannot be written: {reason} (in {existing})") from None


def check_not_in_use(run_dir: Path) -> None:
    """A run dir another live process trains into is refused before Hydra rewrites its
    ``.hydra/`` files (:mod:`seqrnn.training.lock`)."""
    from seqrnn.training.lock import holder_of

    holder = holder_of(run_dir)
    if holder is not None:
        raise Refused(
            f"run dir {run_dir} is in use by {holder}; wait for it to finish, stop it, or "
            "train into another dir"
        )


def check_data_root(root: Path, download: bool) -> None:
    """``data.root`` is a folder, or (to download into) a path where one can be made."""
    if root.exists() and not root.is_dir():
        raise Refused(f"data.root={root} is a file; give the folder of the four MNIST files")
    if not root.exists() and download:
        check_writable(root, "data.root")


def remove_if_unused(run_dir: Path, since: float, new_dirs: Sequence[Path] = ()) -> bool:
    """Remove ``run_dir`` when all it holds is what Hydra wrote for a command that was then
    refused (``.hydra/``, the log, the lock), all written after ``since``, and then those of
    ``new_dirs`` (the folders above it that this command made) that are left empty; True if
    ``run_dir`` was removed.

    The fallback for checks that need the data or a checkpoint read: nothing of a run that
    trained, nor anything older than this command, is ever removed."""
    if not run_dir.is_dir():
        return False
    hydra_own = {HYDRA_DIR, LOCK_FILE}
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    for path in files:
        top = path.relative_to(run_dir).parts[0]
        ours = top in hydra_own or (
            len(path.relative_to(run_dir).parts) == 1 and top.endswith(".log")
        )
        if not ours or path.stat().st_mtime < since:
            return False
    for path in sorted(run_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    run_dir.rmdir()
    for folder in sorted(new_dirs, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return True


def check_device(key: str, device: str) -> None:
    """``device`` (auto, cpu, cuda, gpu) is one this machine has."""
    if device not in ("cuda", "gpu"):
        return
    import torch

    if not torch.cuda.is_available():
        raise Refused(
            f"{key}={device}: this machine has no CUDA GPU that torch can use "
            f"(torch {torch.__version__}); use {key}=cpu, or {key}=auto to take a GPU when "
            "there is one"
        )
