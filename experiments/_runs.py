"""The pieces of one training run that :func:`experiments.train.train` reads top to bottom:
its checks before anything is written, its device and threads, what it prints."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from seqrnn.layout import LAST_CHECKPOINT, RESULTS_FILE, TENSORBOARD_DIR


@contextlib.contextmanager
def job_device(cfg: DictConfig) -> Iterator[dict[str, Any]]:
    """The trainer's ``devices`` for this job: on a machine with several GPUs, a job that asks
    for one holds one no other seqrnn job holds (:mod:`seqrnn.training.gpus`), ``{"devices":
    [i]}``; elsewhere ``{}`` (the configured devices)."""
    import torch

    from seqrnn.training.gpus import one_gpu, wants_one_of

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not wants_one_of(cfg.trainer, count):
        yield {}
        return
    with one_gpu(count) as index:
        print(f"GPU {index} of {count} (one job per GPU)", flush=True)
        yield {"devices": [index]}


def cpu_multiplies_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 AVX-512-BF16 or AMX). Elsewhere
    (AVX2, most laptops) oneDNN emulates the bfloat16 products, several times slower than
    float32 ones."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def runnable_precision(trainer_cfg: Any) -> dict[str, Any]:
    """``{"precision": "32-true"}`` where the configured bfloat16 cannot run fast: a recipe in
    ``bf16-mixed`` (fast on a CPU with AVX-512-BF16, on NVIDIA Ampere and newer) on an older
    GPU, which has no bfloat16 arithmetic, or on a CPU without it, trains in float32 and says so
    in one line (float16, the other mixed precision, overflows over 784 steps without loss
    scaling tuned for it); else ``{}`` (the configured precision)."""
    import torch

    from seqrnn.console import tell

    precision = str(trainer_cfg.get("precision", "32-true"))
    if not precision.startswith("bf16"):
        return {}
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        major, minor = torch.cuda.get_device_capability()
        if (major, minor) >= (8, 0):
            return {}
        name = f"{torch.cuda.get_device_name()} (compute capability {major}.{minor})"
    elif accelerator in ("auto", "cpu") and not cpu_multiplies_bf16():
        name = "this CPU (no AVX-512-BF16 or AMX)"
    else:
        return {}
    tell(
        f"trainer.precision={precision}: {name} has no bfloat16 arithmetic; "
        "training in float32 (trainer.precision=32-true)"
    )
    return {"precision": "32-true"}


def going_on_line(run_dir: Path, saved: dict[str, Any], max_epochs: Any) -> str:
    """What a resumed run says first: the step it goes on from, and whether it trains at all
    (a finished run resumed without more epochs only evaluates again)."""
    line = f"going on from {run_dir / LAST_CHECKPOINT}: step {saved['global_step']}"
    results = run_dir / RESULTS_FILE
    if not results.is_file():
        return line
    epochs = json.loads(results.read_text()).get("epochs")
    if isinstance(epochs, int) and isinstance(max_epochs, int) and 0 < max_epochs <= epochs:
        line += (
            f"; it finished its {plural(epochs, 'epoch')} before, so nothing is trained and its "
            f"best checkpoint is evaluated again (trainer.max_epochs={epochs + 1} or more "
            "trains on)"
        )
    return line


def what_is_kept(run_dir: Path) -> str:
    """After a failed write: the checkpoint a resumed run would go on from, if any."""
    last = run_dir / LAST_CHECKPOINT
    if last.is_file():
        return f"{last} is the last good checkpoint: free some space, then resume={run_dir}"
    return "no checkpoint was saved yet: free some space and start the run again"


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def slurm_plugins() -> list[Any]:
    """In a SLURM job: Lightning's SLURM environment (ranks from srun) without its own
    auto-requeue, so that one mechanism owns the signals: LastCheckpoint saves at the end of the
    batch on SIGTERM and on the time-limit warning (SIGUSR2), and requeues for the latter;
    Lightning's requeue (on SIGUSR1) would write a second, epoch-level checkpoint of its own."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from seqrnn.errors import ConfigError

    if not SLURMEnvironment.detect():
        return []
    try:
        return [SLURMEnvironment(auto_requeue=False)]
    except RuntimeError as err:  # a job shape Lightning cannot map to ranks, e.g. --ntasks
        raise ConfigError(f"this SLURM job cannot run as seqrnn's ranks: {err}") from None


def use_tf32(enabled: bool) -> None:
    """TensorFloat-32 for float32 matmuls and cuDNN (RNNs included) on GPUs that have it, or
    not: PyTorch's defaults differ between the two (cuDNN's on, matmul's off), so seqrnn sets
    both from one setting (``tf32``). No effect on a CPU."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def check_train_job(cfg: DictConfig) -> None:
    """What experiments.train checks before anything is written (``check=`` of its entry
    point): the run settings, the accelerator, that the run fits in memory, and that its
    loggers' packages are there."""
    from experiments._preflight import check_device

    check_run_settings(cfg)
    check_device("trainer.accelerator", cfg.trainer.accelerator)
    check_memory(cfg)
    check_loggers(cfg)


# logger config -> the package its Lightning logger needs, and what installs it
LOGGER_PACKAGES = {"mlflow": ("mlflow", "pip install -e '.[mlflow]'")}


def check_loggers(cfg: DictConfig) -> None:
    """Refuse a logger whose package is not installed, in one line that says how to get it."""
    import importlib.util

    from seqrnn.errors import ConfigError

    for name in cfg.get("logger") or {}:
        package, how = LOGGER_PACKAGES.get(name, (None, ""))
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(f"logger={name} needs the {package} package, not installed: {how}")


# Bytes a training step keeps per sequence, step, unit and layer for the backward pass, as
# measured on the fused CPU kernels (GRU-128 8, LSTM-128 27, predictors up to 25): rounded up.
ACTIVATION_BYTES = 32
# Bytes per parameter while training with Adam: the weight, its gradient and two moments.
PARAMETER_BYTES = 16


def check_memory(cfg: DictConfig) -> None:
    """Refuse a run that cannot fit in this machine's memory (``units=100000``, a batch of
    millions), with one line that names the sizes, instead of a machine-wide OOM kill later."""
    from seqrnn.errors import ConfigError

    units, layers = int(cfg.model.units), int(cfg.model.layers)
    data = cfg.data
    if "segments" in data:  # Bayesian sequences: symbols in, one per step
        steps, inputs = int(data.segments) * (int(data.period) + 1), len(data.alpha) + 1
    else:
        steps, inputs = (28, 28) if data.order == "row" else (784, 1)
    batch = max(int(data.batch_size), 1)
    weights = 4 * layers * units * (units + max(inputs, units) + 2)  # 4 gates at most
    need = weights * PARAMETER_BYTES + batch * steps * units * layers * ACTIVATION_BYTES
    have = available_memory()
    if have is not None and need > have:
        raise ConfigError(
            f"units={units}, layers={layers}, data.batch_size={batch} need about "
            f"{need / 1e9:.1f} GB to train ({steps} steps), and this machine has "
            f"{have / 1e9:.1f} GB available; choose fewer units or a smaller data.batch_size"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new process (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_run_settings(cfg: DictConfig) -> None:
    """The run settings the library cannot check itself, each a one-line error: the threads,
    the callbacks' configs and the time budget's format, and epochs a rate schedule can end at."""
    from experiments._options import DURATION
    from seqrnn.errors import ConfigError, require_int

    if cfg.threads is not None:
        require_int("threads", cfg.threads, 1)
    for name, callback in (cfg.get("callbacks") or {}).items():
        if callback is not None and not isinstance(callback, DictConfig):
            raise ConfigError(
                f"callbacks.{name}={callback!r} is not allowed; each callbacks.<name> is a "
                "callback's config (a _target_ and its arguments) or null"
            )
    duration = ((cfg.get("callbacks") or {}).get("timer") or {}).get("duration")
    if isinstance(duration, str) and not DURATION.fullmatch(duration.strip()):
        raise ConfigError(
            f"callbacks.timer.duration={duration!r} is not allowed; give days:hours:minutes:"
            "seconds, DD:HH:MM:SS (e.g. 00:02:15:00), or null for no time budget"
        )
    epochs, schedule = cfg.trainer.get("max_epochs"), cfg.model.get("lr_schedule")
    if schedule in ("onecycle", "cosine") and not (
        isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1
    ):
        raise ConfigError(
            f"trainer.max_epochs={epochs!r} is not allowed with model.lr_schedule={schedule}: "
            "the schedule ends at max_epochs, so it must be an integer >= 1"
        )


def threads_per_job() -> int | None:
    """Torch threads for each job when the launcher runs several at once (e.g.
    ``hydra/launcher=parallel``): the cores shared out, so that jobs do not oversubscribe them.
    None when jobs run one at a time."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    n_jobs = HydraConfig.get().launcher.get("n_jobs")
    cores = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 1:
        return None
    return max(1, cores // (cores if n_jobs < 0 else n_jobs))


def print_outputs(run_dir: Path, results: dict[str, Any]) -> None:
    """Tell the user (and the run's log) where everything went and the headline numbers."""
    from seqrnn.console import tell

    scores = ", ".join(
        f"{key} {results[key]:.4f}" for key in ("test_loss", "test_acc") if key in results
    )
    lines = [
        f"run dir:     {run_dir}",
        f"results:     {run_dir / RESULTS_FILE}  ({scores}, {plural(results['epochs'], 'epoch')}, "
        f"{results['wall_seconds']:.0f} s)",
        f"checkpoint:  {run_dir / results['checkpoint'] if results['checkpoint'] else 'none kept'}",
    ]
    if (run_dir / TENSORBOARD_DIR).is_dir():
        lines.append(f"tensorboard: tensorboard --logdir {run_dir / TENSORBOARD_DIR}")
    tell("\n".join(lines))
