"""What every Hydra entry point shares: argument checks before Hydra runs, and clean errors.

Kept free of torch and Lightning imports so that a mistyped option is answered in a second.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from seqrnn.layout import LAST_CHECKPOINT

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
EXIT_USAGE = 2
# The data settings a model was trained with, which its checkpoint keeps: a study or an
# evaluation reads the images the same way.
TRAINED_DATA_KEYS = ("order", "threshold", "val_size")


def fail(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`~seqrnn.errors.SeqRNNError` raised inside (or wrapped by Hydra's
    ``instantiate``) into one line on stderr and exit status 2; other errors pass through."""
    from seqrnn.errors import SeqRNNError

    try:
        yield
    except Exception as err:  # noqa: BLE001 - re-raised below unless it is the user's error
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, SeqRNNError):
            cause = cause.__cause__
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


def check_group_choices(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Fail with one line for ``group=option`` where ``conf/<group>/<option>.yaml`` is missing.

    Hydra would say so too, but over a dozen lines with its search path; this names the bad
    value and the options in one. Sweeps (``cell=gru,foo``) are checked value by value.
    """
    from hydra.core.override_parser.types import Glob

    for token, override in _overrides(argv):
        group = override.key_or_group
        folder = conf_dir / group
        if group.startswith("hydra") or override.is_delete() or not folder.is_dir():
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if isinstance(override.value(), Glob):  # glob(bayes_*): each option it matches
            values = override.value().filter(options)
            if not values:
                fail(f"'{token}' matches no {group}; choose from: {', '.join(options)}")
        elif override.is_sweep_override():
            values = list(override.sweep_string_iterator())
        else:
            values = [override.get_value_element_as_str()]
        for value in values:
            if value != "null" and value not in options:
                fail(
                    f"{group}={value} is not a known {group} (in '{token}'); "
                    f"choose one of: {', '.join(options)}"
                )


def expand_resume(argv: list[str], run_file: str = LAST_CHECKPOINT) -> list[str]:
    """``resume=DIR`` -> the overrides DIR was made with, then ``argv``, writing into DIR.

    Later overrides win, so ``resume=DIR trainer.max_epochs=20`` extends a finished run (a
    resumed run is trained even when it has results: ``skip_done=false``).
    """
    tokens = [t for t in argv if t.startswith("resume=")]
    if not tokens:
        return argv
    run_dir = Path(tokens[-1].split("=", 1)[1]).expanduser()
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / run_file).is_file() or not overrides_file.is_file():
        fail(
            f"resume={run_dir} is not a run dir to resume: it needs {run_file} and "
            ".hydra/overrides.yaml (give the dir that `python -m experiments.train` printed)"
        )
    given = {override.key_or_group for _, override in _overrides(argv)}
    original = yaml.safe_load(overrides_file.read_text()) or []
    kept = [
        t
        for t in original
        if (p := _parse(t)) is not None and p.key_or_group not in given | {"resume", "skip_done"}
    ]
    extra = [] if "skip_done" in given else ["skip_done=false"]
    return [*kept, *argv, *extra, f"hydra.run.dir='{run_dir}'"]


def prepare_argv(argv: list[str], required: dict[str, str] | None = None) -> list[str]:
    """The checks and expansions above, in order; returns the argv to hand to Hydra.

    ``required`` maps keys the command cannot run without to what they are, e.g.
    ``{"ckpt": "the task=predict model to complete with"}``.
    """
    check_group_choices(argv)
    for key, what in (required or {}).items():
        if not any(token.startswith(f"{key}=") for token in argv):
            fail(f"{key}=<run dir or .ckpt> is required: {what}")
    return expand_resume(argv)


def launch(main: Callable[[], Any], required: dict[str, str] | None = None) -> None:
    """Run a Hydra ``main`` on this process's command line, checked and expanded by
    :func:`prepare_argv` (``required``: see there)."""
    sys.argv = [sys.argv[0], *prepare_argv(sys.argv[1:], required)]
    main()


def trained_data(cfg: DictConfig, trained_on: dict[str, Any], **fixed: Any):
    """The DataModule of ``cfg.data``, set up, reading the images as the checkpoint's model was
    trained on them (``trained_on``: its order, threshold and validation size) unless ``fixed``
    says otherwise. Where the files are comes from ``cfg``."""
    from hydra.utils import instantiate

    settings = {key: trained_on[key] for key in TRAINED_DATA_KEYS if key in trained_on}
    datamodule = instantiate(cfg.data, **{**settings, **fixed})
    datamodule.setup()
    return datamodule


def print_study_outputs(out_dir: Path, report: dict, results: list[str]) -> None:
    """Where a study's files went: its dir, the ``results`` files, figures, TensorBoard."""
    names = ", ".join(Path(f).name for f in report["figures"])
    print(f"output dir:  {out_dir}")
    print(f"results:     {', '.join(str(out_dir / name) for name in results)}")
    print(f"figures:     {out_dir / 'figures'}  ({names})")
    print(f"tensorboard: tensorboard --logdir {out_dir / 'tensorboard'}")
