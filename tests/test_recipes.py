"""One home per recipe: the plain `experiments.train task=T cell=C size=S` composes what the
shipped run of that configuration was trained with, and the study trains exactly that."""

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments._cli import CONF_DIR, RECIPE_KEYS, prepare_argv
from seqrnn.sweeps.study import StudyPlan, training_steps

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
SHIPPED = sorted(DOCS.glob("*/*/config.yaml"))
SHIPPED = [p for p in SHIPPED if p.parent.parent.name in ("classify", "predict")]
# A run's budget, threads, paths and progress display may differ from the shipped run's; what
# a recipe decides (RECIPE_KEYS, the settings a resumed run keeps) may not, nor its data.
TRAINER_KEYS = ("gradient_clip_algorithm",)  # set once for all (conf/trainer), kept all the same
# Data settings added since the runs were shipped, at the values that read the data as they did.
ADDED_DATA = {"permutation_seed": 5544}
# Settings added to the config since: a shipped config without one trained at this value.
ADDED = {"trainer.precision": "32-true"}


def compose_train(argv: list[str]):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", [*prepare_argv(argv), "paths.output_dir=/tmp/unused"])


def recipe_of(config) -> dict:
    """The settings a recipe decides, from a composed config or a shipped config.yaml."""
    config = OmegaConf.to_container(config) if OmegaConf.is_config(config) else config
    return {
        "task/cell/size": (config["task"], config["cell"], config["layers"], config["units"]),
        "data": config["data"],
        **{key: OmegaConf.select(OmegaConf.create(config), key) for key in RECIPE_KEYS},
        **{f"trainer.{key}": config["trainer"][key] for key in TRAINER_KEYS},
    }


# The data set a shipped run's name ends with, as a command chooses it.
DATA_OF_ORDER = {"permuted": "data=mnist_permuted"}


def shipped_command(name: str) -> list[str]:
    """The plain command of a shipped run: ``classify-gru-1x128-permuted`` is
    ``task=classify cell=gru size=1x128 data=mnist_permuted``."""
    task, cell, size, *order = name.split("-")
    return [f"task={task}", f"cell={cell}", f"size={size}", *(DATA_OF_ORDER[o] for o in order)]


def test_every_shipped_task_and_size_is_found():
    pixel = [p for p in SHIPPED if p.parent.name.count("-") == 2]
    assert len(pixel) == 16
    assert {p.parent.name for p in SHIPPED} - {p.parent.name for p in pixel} == {
        "classify-gru-1x128-permuted",
        "classify-lstm-1x128-permuted",
    }


@pytest.mark.parametrize("shipped", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_the_plain_command_composes_the_shipped_runs_recipe(shipped):
    composed = recipe_of(compose_train(shipped_command(shipped.parent.name)))
    expected = recipe_of(yaml.safe_load(shipped.read_text()))
    for name, value in ADDED_DATA.items():
        if name not in expected["data"] and composed["data"].get(name) == value:
            del composed["data"][name]
    if expected["data"].get("order") != "permuted":  # only the permuted order reads its seed
        for recipe in (composed, expected):
            recipe["data"].pop("permutation_seed", None)
    for key, value in ADDED.items():
        if expected[key] is None:
            expected[key] = value
    for key in expected:  # key by key, so that a failure names the setting
        assert composed[key] == expected[key], key


def test_units_alone_name_the_size_and_bring_its_recipe():
    by_units = compose_train(["task=classify", "cell=lstm", "units=32"])
    by_size = compose_train(["task=classify", "cell=lstm", "size=1x32"])
    assert recipe_of(by_units) == recipe_of(by_size)


def test_a_shape_without_a_recipe_gets_the_tasks_recipe():
    task_recipe = OmegaConf.load(CONF_DIR / "recipe" / "classify.yaml")
    cfg = compose_train(["task=classify", "layers=2", "units=48"])
    assert (cfg.layers, cfg.units) == (2, 48)
    for key in ("lr", "lr_schedule", "gate_bias_init", "head_batchnorm"):
        assert cfg.model[key] == task_recipe.model[key], key
    assert cfg.trainer.max_epochs == task_recipe.trainer.max_epochs
    # and it is not the recipe of the size it was reshaped from (1x128)
    assert cfg.model.lr != compose_train(["task=classify"]).model.lr


@pytest.mark.parametrize("drop", ["~recipe", "recipe=null"])
def test_no_recipe_gives_the_library_defaults(drop):
    from seqrnn.models import SequenceClassifier

    cfg = compose_train(["task=classify", "cell=gru", "size=1x32", drop])
    shared = OmegaConf.load(CONF_DIR / "model" / "sequence.yaml")
    for key in ("lr", "lr_schedule", "gate_bias_init", "dropout"):
        assert cfg.model[key] == shared[key], key
    model = SequenceClassifier(cell="gru", units=32, layers=1, in_features=1)
    assert cfg.model.head_batchnorm == model.hparams.head_batchnorm
    trainer = OmegaConf.load(CONF_DIR / "trainer" / "default.yaml")
    assert cfg.trainer.max_epochs == trainer.max_epochs


def test_the_study_runs_the_plain_command_plus_budget_threads_and_paths(tmp_path):
    plan = StudyPlan(
        tasks=["classify", "predict"],
        cells=["gru", "lstm"],
        sizes=["1x32", "1x128"],
        budgets={
            t: {"1x32": "00:00:25:00", "1x128": "00:02:00:00"} for t in ("classify", "predict")
        },
        out=tmp_path / "runs",
        docs=tmp_path / "docs",
        pretrained=tmp_path / "pretrained",
    )
    steps = training_steps(plan)
    assert [c[1:4] for c, _ in steps] == [  # the longest budgets first
        [f"task={t}", f"cell={c}", f"size={s}"]
        for s in ("1x128", "1x32")
        for t in ("classify", "predict")
        for c in ("gru", "lstm")
    ]
    for command, made in steps:
        plain, rest = command[:4], command[4:]
        assert plain[0] == "experiments.train"
        keys = sorted(token.split("=", 1)[0] for token in rest)
        assert keys == [
            "callbacks.timer.duration",
            "hydra.run.dir",
            "threads",
            "trainer.enable_progress_bar",
        ]
        # the budget, threads and progress display change nothing a recipe decides
        budgeted = compose_train([*plain[1:], *rest[:2], rest[3]])
        assert recipe_of(budgeted) == recipe_of(compose_train(plain[1:]))
        assert made and made[0].parent.name == "-".join(t.split("=")[1] for t in plain[1:])
