"""The options table (experiments._options): every key of every entry point's config has a row,
its choices are the library's, and each row refuses what it should."""

import pytest
from hydra import compose, initialize_config_dir

from experiments._cli import CONF_DIR
from experiments._options import OPTIONS, is_wiring, leaves, problems, spec_of

JOBS = [
    ("train", ["task=classify"]),
    ("train", ["task=predict"]),
    ("train", ["task=dirichlet"]),
    ("evaluate", ["ckpt=x"]),
    ("complete", ["ckpt=x"]),
    ("inpaint", ["ckpt=x"]),
    ("analyze", ["ckpt=x"]),
    ("search", []),
    ("search", ["search=predict"]),
    ("search", ["search=smoke", "launcher=slurm"]),
    ("train", ["data=mnist_permuted", "size=1x128"]),
    ("study", []),
]


def composed(name, overrides):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=name):
        return compose(name, overrides=overrides)


@pytest.mark.parametrize(("name", "overrides"), JOBS, ids=[f"{n} {o}" for n, o in JOBS])
def test_every_option_of_every_entry_point_has_a_type_and_a_range(name, overrides):
    cfg = composed(name, overrides)
    missing = [key for key, _ in leaves(cfg) if not is_wiring(key) and spec_of(name, key) is None]
    assert not missing, f"options without a row in experiments._options.OPTIONS: {missing}"
    assert list(problems(name, cfg)) == []  # the shipped defaults are allowed


def test_the_table_offers_the_choices_the_library_takes():
    from seqrnn.data.datamodule import ORDERS
    from seqrnn.models.base import LR_SCHEDULES, OPTIMIZERS
    from seqrnn.nn.stack import BACKENDS, GATE_BIAS_INITS, RECURRENT_INITS
    from seqrnn.studies.inpainting import PLACEMENTS

    train = OPTIONS["train"]
    assert train["model.recurrent_init"].choices == RECURRENT_INITS
    assert train["model.gate_bias_init"].choices == GATE_BIAS_INITS
    assert train["model.backend"].choices == BACKENDS
    assert train["model.optimizer"].choices == OPTIMIZERS
    assert train["model.lr_schedule"].choices == LR_SCHEDULES
    assert train["data.order"].choices == ORDERS
    assert OPTIONS["inpaint"]["placement"].choices == PLACEMENTS


@pytest.mark.parametrize(
    ("key", "good", "bad"),
    [
        ("units", [1, 512], [0, -3, "abc", 1.5, True]),
        ("model.lr", [1e-3, 2], [0, -1e-3, "abc", None]),
        ("threads", [None, 1, 2], [0, "x"]),
        ("trainer.limit_train_batches", [1.0, 0.25, 3], [0, -5, 1.5, 0.0]),
        ("trainer.limit_val_batches", [0, 0.0, 1.0, 2], [-1, 1.5]),
        ("callbacks.timer.duration", [None, "00:02:15:00"], ["1h", "2:15", 5]),
        ("model.head_hidden", [None, 64, [64, 64], []], [0, "wide", [0]]),
        ("data.alpha", [[1.0, 2.0]], [[], [0.0], [-1.0], "x"]),
    ],
)
def test_a_row_takes_what_is_allowed_and_names_what_is_not(key, good, bad):
    spec = spec_of("train", key)
    for value in good:
        assert spec.problem(key, value) is None, value
    for value in bad:
        line = spec.problem(key, value)
        assert line is not None and line.startswith(f"{key}={value!r} is not allowed; "), value
