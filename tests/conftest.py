"""Shared fixtures: tiny MNIST-format data made by the tests, and the real files when present."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from seqrnn.data import MNIST_FILES, write_idx
from seqrnn.data.idx import md5_hex, read_bytes

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The shared MNIST beside the project checkout (../shared/data/mnist), as CI provides it.
REAL_MNIST = PROJECT_ROOT.parent / "shared" / "data" / "mnist"
TINY_SIZES = {"train": 100, "test": 40}
TINY_VAL = 20


def make_tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images and 0..9 labels in the four MNIST parts."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in TINY_SIZES.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
    return arrays


def write_tiny_mnist(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, name in MNIST_FILES.items():
        write_idx(folder / (f"{name}.gz" if gz else name), arrays[part])
    return folder


def checksums_of(folder: Path) -> dict[str, str]:
    """MD5 of each file's uncompressed content, keyed like ``MNIST_MD5``."""
    return {
        name: md5_hex(read_bytes(next(folder.glob(f"{name}*")))) for name in MNIST_FILES.values()
    }


@pytest.fixture(scope="session")
def tiny_arrays() -> dict[str, np.ndarray]:
    return make_tiny_arrays()


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory, tiny_arrays) -> Path:
    """A folder with the four files (gzipped) of 100 train and 40 test random images."""
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny_mnist"), tiny_arrays)


@pytest.fixture
def real_mnist() -> Path:
    if not all((REAL_MNIST / f"{name}.gz").is_file() for name in MNIST_FILES.values()):
        pytest.skip(f"real MNIST not found in {REAL_MNIST}")
    return REAL_MNIST


def tiny_rows(data_dir: Path, **kwargs):
    """The tiny images read row by row (28 steps: fast), in batches of 16, as a DataModule."""
    from seqrnn.data import MNISTSequenceDataModule

    settings = {"order": "row", "val_size": TINY_VAL, "batch_size": 16, "verify": False}
    return MNISTSequenceDataModule(str(data_dir), download=False, **{**settings, **kwargs})


def quiet_trainer(**kwargs) -> L.Trainer:
    """A CPU-friendly Trainer that writes nothing and prints little; ``kwargs`` add to it."""
    defaults = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**defaults, **kwargs})


def tiny_overrides(data_dir: Path, run_dir: Path | None = None) -> list[str]:
    """Hydra overrides for a run on the tiny data that takes seconds (and writes into run_dir)."""
    return [
        f"data.root={data_dir}",
        "data.verify=false",
        f"data.val_size={TINY_VAL}",
        "data.batch_size=16",
        "data.eval_batch_size=32",
        "size=1x32",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        *([f"hydra.run.dir={run_dir}"] if run_dir else []),
    ]


def run_entry(module: str, *args: str, env: dict[str, str] | None = None, cwd=PROJECT_ROOT):
    """``python -m experiments.<module> ARGS`` from the project root (or ``cwd``), output
    captured (``env``: more environment variables)."""
    env = {**{k: v for k, v in os.environ.items() if k != "SEQRNN_DATA_DIR"}, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"experiments.{module}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_train(*args: str) -> subprocess.CompletedProcess:
    return run_entry("train", *args)


def save_untrained(model: L.LightningModule, path: Path) -> Path:
    """Write ``model`` as a Lightning checkpoint without training it."""
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Untrained task=predict and task=classify checkpoints, by task."""
    from seqrnn.models import NextPixelPredictor, SequenceClassifier

    folder = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    return {
        "predict": save_untrained(NextPixelPredictor(units=8), folder / "predict.ckpt"),
        "classify": save_untrained(SequenceClassifier(units=8), folder / "classify.ckpt"),
    }


# A callback that signals its own process at the end of one training batch (0-based epoch and
# batch), or at the start of a validation or final-evaluation batch (``stage``; epoch None: in
# any), or at the fit's setup, before training starts (``stage="setup"``), on one rank or all.
# It runs after LastCheckpoint (in the fault-tolerance runs, a last.ckpt after every batch).
SIGNALLER = textwrap.dedent(
    """
    import os, signal
    from lightning.pytorch.callbacks import Callback

    class SignalAt(Callback):
        def __init__(self, epoch, batch, signal_name, stage="train", rank=None):
            self.at, self.signum = (epoch, batch), getattr(signal, signal_name)
            self.stage, self.rank = stage, rank

        def _maybe(self, trainer, stage, batch_idx):
            mine = self.rank is None or trainer.global_rank == self.rank
            epoch, at = trainer.current_epoch, self.at
            if mine and stage == self.stage and (at[0] in (None, epoch)) and batch_idx == at[1]:
                os.kill(os.getpid(), self.signum)

        def setup(self, trainer, pl_module, stage):
            if stage == "fit" and self.stage == "setup":
                os.kill(os.getpid(), self.signum)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._maybe(trainer, "train", batch_idx)

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, *_):
            if not trainer.sanity_checking:
                self._maybe(trainer, "validate", batch_idx)

        def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, *_):
            self._maybe(trainer, "test", batch_idx)
    """
)


def signal_at(
    epoch: int | None, batch: int, name: str, stage: str = "train", rank: int | None = None
) -> list[str]:
    return [
        "+callbacks.signal._target_=signaller.SignalAt",
        f"+callbacks.signal.epoch={'null' if epoch is None else epoch}",
        f"+callbacks.signal.batch={batch}",
        f"+callbacks.signal.signal_name={name}",
        f"+callbacks.signal.stage={stage}",
        *([f"+callbacks.signal.rank={rank}"] if rank is not None else []),
    ]


@pytest.fixture
def signaller(tmp_path, monkeypatch):
    folder = tmp_path / "helpers"
    folder.mkdir()
    (folder / "signaller.py").write_text(SIGNALLER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), str(PROJECT_ROOT)]))


def tiny_search_args(data_dir, study_dir, *extra, train_extra=()):
    train = [
        "task=classify",
        "size=1x32",
        f"data.root={data_dir}",
        "data.verify=false",
        f"data.val_size={TINY_VAL}",
        "data.batch_size=16",
        "data.eval_batch_size=32",
        "data.order=row",
        "trainer.max_epochs=2",
        *train_extra,
    ]
    listed = ",".join(f'"{t}"' for t in train)
    return [f"search.train=[{listed}]", "search.name=tiny", f"hydra.run.dir={study_dir}", *extra]


LOCAL_POSTGRES = "postgresql+psycopg://seqrnn:seqrnn@127.0.0.1:5432/seqrnn"


@pytest.fixture
def postgres_url():
    """A new, empty database on the local PostgreSQL (`make postgres-local`), dropped after the
    test; without a server a skip (a failure under CI=true)."""
    import os
    import uuid

    server = os.environ.get("SEQRNN_TEST_POSTGRES", LOCAL_POSTGRES)
    try:
        import psycopg

        admin = psycopg.connect(
            server.replace("postgresql+psycopg://", "postgresql://"),
            connect_timeout=5,
            autocommit=True,
        )
    except Exception as err:  # noqa: BLE001 - no driver, no server, no database
        why = f"no PostgreSQL at {server} ({type(err).__name__}; as root: scripts/postgres-local)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI needs it")
        pytest.skip(why)
    database = f"seqrnn_test_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {database}")
    try:
        yield server.rsplit("/", 1)[0] + f"/{database}"
    finally:
        admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
        admin.close()
