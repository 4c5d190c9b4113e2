"""Reading checkpoints safely: they exist, they are seqrnn's, they are of the right task."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from seqrnn.errors import CheckpointError, OutputError
from seqrnn.files import write_atomic
from seqrnn.layout import BEST_CHECKPOINT, LAST_CHECKPOINT
from seqrnn.models import TASKS, SequenceModel, tasks_for
from seqrnn.pretrained import PREFIX, PRETRAINED_DIR, shipped

# Stack settings a checkpoint must share with the model it is loaded into.
_ARCHITECTURE_KEYS = ("cell", "units", "layers", "in_features")
# In a run dir, the checkpoints to use, in order of preference.
RUN_DIR_CHECKPOINTS = (BEST_CHECKPOINT, LAST_CHECKPOINT)
# The data settings a model was trained with, which its checkpoint keeps: a study, an evaluation
# or a benchmark reads the images the same way.
TRAINED_DATA_KEYS = ("order", "permutation_seed", "threshold", "val_size")


# What a shipped checkpoint keeps of a training checkpoint: enough to load and evaluate it.
SHIPPED_KEYS = (
    "state_dict",
    "hyper_parameters",
    "hparams_name",
    "datamodule_hyper_parameters",
    "datamodule_hparams_name",
    "task",
    "epoch",
    "global_step",
    "pytorch-lightning_version",
)


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file as given, the best (else last) checkpoint of a run dir, or the shipped
    checkpoint of ``pretrained:<name>`` (see :mod:`seqrnn.pretrained`)."""
    if str(path).startswith(PREFIX):
        return pretrained_path(str(path).removeprefix(PREFIX))
    path = Path(path).expanduser()
    if path.is_dir():
        for name in RUN_DIR_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(
            f"ckpt={path} is a folder without {' or '.join(RUN_DIR_CHECKPOINTS)}; give a run "
            "dir that kept checkpoints, or a .ckpt file"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def pretrained_path(name: str) -> Path:
    """The file of shipped checkpoint ``name``; an unknown name is named with the list."""
    path = PRETRAINED_DIR / f"{name}.ckpt"
    if not path.is_file():
        names = ", ".join(shipped()) or "none"
        raise CheckpointError(
            f"ckpt={PREFIX}{name} is not a shipped checkpoint; shipped: {names} "
            f"(as {PREFIX}<task>-<cell>-<layers>x<units>)"
        )
    return path


def export_weights(source: str | Path, target: str | Path, overwrite: bool = False) -> Path:
    """Write checkpoint (or run dir) ``source`` to ``target`` without optimizer, scheduler,
    callback or loop state: what ``load_from_checkpoint`` and evaluation need, a third of the
    size. Returns ``target``.

    An existing ``target`` is replaced only when ``overwrite``; the file is written whole or not
    at all (a temporary file, then a rename).

    Raises:
        CheckpointError: ``source`` is not a checkpoint, or ``target`` exists.
        OutputError: ``target`` cannot be written (a full disk, a folder that is not writable).
    """
    source = resolve_checkpoint(source)
    checkpoint = read_checkpoint(source)
    slim = {key: checkpoint[key] for key in SHIPPED_KEYS if key in checkpoint}
    target = Path(target)
    if target.exists() and not overwrite:
        raise CheckpointError(
            f"{target} exists; --force replaces it, or --to another folder keeps it"
        )
    if target.parent.exists() and not target.parent.is_dir():
        raise OutputError(f"cannot write {target}: {target.parent} is a file, not a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror}") from err
    return write_atomic(target, lambda out: torch.save(slim, out))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but every checkpoint (best, last, any other) is written to
    a temporary file and renamed: a full disk or a kill during a save leaves the previous file
    whole and no temporary file behind, and the failure is one :class:`OutputError` line."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror}") from err
        write_atomic(path, lambda out: torch.save(checkpoint, out))


def read_checkpoint(path: str | Path, task: str | None = None) -> dict[str, Any]:
    """Load a seqrnn checkpoint onto the CPU, checking that it exists and is of ``task``.

    Raises:
        CheckpointError: no such file, not a seqrnn checkpoint, or one of another task.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # Our own Lightning checkpoints hold plain Python objects beside the tensors.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        # the first sentence: torch's zip reader goes on for a paragraph
        reason = str(err).split(". ")[0].strip() or type(err).__name__
        raise UnreadableCheckpoint(f"{path} is not a readable checkpoint ({reason})") from err
    found = checkpoint.get("task") if isinstance(checkpoint, dict) else None
    if found is not None and found not in TASKS:
        _import_task(path, found, checkpoint.get("task_class"))
    if found not in TASKS:
        raise CheckpointError(f"{path} is not a seqrnn checkpoint (no task recorded in it)")
    if task is not None and found != task:
        raise CheckpointError(
            f"checkpoint {path} belongs to task={found}; this job needs a task={task} checkpoint"
        )
    return checkpoint


def _import_task(path: Path, task: str, where: str | None) -> None:
    """Import the class of a task of one's own from the path its checkpoint keeps: importing it
    registers the task (seqrnn.models.base.TASKS)."""
    if not where:
        return  # not seqrnn's: read_checkpoint says so
    module, _, name = where.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError as err:
        raise CheckpointError(
            f"checkpoint {path} is of task={task}, whose class {where} cannot be imported "
            f"({err}); make its package importable (PYTHONPATH)"
        ) from err
    if found is None or task not in TASKS:
        raise CheckpointError(
            f"checkpoint {path} is of task={task}, but {where} is not a seqrnn task class"
        )


class UnreadableCheckpoint(CheckpointError):
    """A file that ``torch.load`` cannot read (e.g. cut short by a copy)."""


def newest_readable(folder: str | Path, other_than: str | Path) -> tuple[Path, int] | None:
    """The most recently written checkpoint in ``folder`` that loads, but ``other_than``, with
    its global step; None if there is none."""
    candidates = sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        if candidate.resolve() == Path(other_than).resolve():
            continue
        try:
            checkpoint = read_checkpoint(candidate)
        except CheckpointError:
            continue
        return candidate, int(checkpoint.get("global_step", 0))
    return None


def check_resumable(path: str | Path, model: SequenceModel) -> Path:
    """Check that ``path`` is a checkpoint ``model`` can resume from; return it."""
    resumable_checkpoint(path, model)
    return Path(path)


def resumable_checkpoint(path: str | Path, model: SequenceModel) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded onto the CPU, once it is one ``model`` can resume from.

    An unreadable one is named with the newest readable checkpoint beside it, which the user
    may copy over it to go on from there."""
    try:
        checkpoint = read_checkpoint(path, model.task)
    except UnreadableCheckpoint as err:
        found = newest_readable(Path(path).parent, other_than=path)
        offer = (
            f"the newest readable checkpoint there is {found[0]} (step {found[1]}): copy it over "
            f"{Path(path).name} to go on from it, or"
            if found
            else "no other checkpoint there is readable:"
        )
        message = f"cannot resume: {err}; {offer} delete it to start again"
        raise UnreadableCheckpoint(message) from None
    hparams = checkpoint.get("hyper_parameters", {})
    differ = [
        f"{key}={hparams.get(key)!r} (this run: {model.hparams[key]!r})"
        for key in _ARCHITECTURE_KEYS
        if hparams.get(key) != model.hparams[key]
    ]
    if differ:
        raise CheckpointError(f"cannot resume from {path}: it was trained with {', '.join(differ)}")
    return checkpoint


def resolve_device(device: str) -> str:
    """``"auto"``: ``"cuda"`` when there is a GPU, else ``"cpu"``; any other name as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_trained(
    ckpt: str | Path, job: str, device: str = "auto", tasks: tuple[str, ...] | None = None
) -> tuple[SequenceModel, Path, dict[str, Any]]:
    """The model of checkpoint (run dir, or ``pretrained:NAME``) ``ckpt`` for ``job``: ``(model
    in eval mode on device, checkpoint file, the data settings it was trained with)``. The job
    takes the tasks that list it in their ``jobs`` (seqrnn.models.tasks_for), or ``tasks``.

    Raises:
        CheckpointError: no such checkpoint, or one of a task ``job`` does not take.
    """
    path = resolve_checkpoint(ckpt)
    checkpoint = read_checkpoint(path)
    task = checkpoint["task"]
    takes = tasks_for(job) if tasks is None else tasks
    if task not in takes:
        allowed = " or ".join(f"task={t}" for t in takes)
        raise CheckpointError(f"checkpoint {path} belongs to task={task}; {job} takes {allowed}")
    model = TASKS[task].load_from_checkpoint(path, map_location=resolve_device(device)).eval()
    return model, path, checkpoint.get("datamodule_hyper_parameters", {})


def check_order(path: Path, trained_on: dict[str, Any], job: str, orders: tuple[str, ...]) -> None:
    """Refuse a model trained in a reading order ``job`` cannot read: its studies show and hide
    pixels at their places in the image (a permuted model reads them elsewhere).

    Raises:
        CheckpointError: ``trained_on["order"]`` (``pixel`` when absent) not in ``orders``.
    """
    order = trained_on.get("order", "pixel")
    if order not in orders:
        raise CheckpointError(
            f"checkpoint {path} was trained in data.order={order}; {job} takes models trained "
            f"in {' or '.join(f'data.order={o}' for o in orders)} (it shows and hides pixels "
            "at their places in the image)"
        )
