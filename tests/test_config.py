"""The Hydra config tree: every option composes and instantiates; argv checks."""

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments._cli import CONF_DIR, check_group_choices, expand_resume, prepare_argv
from seqrnn.data import MNISTSequenceDataModule
from seqrnn.models import TASKS, check_task_data

# the groups of conf/train.yaml whose options stand alone (search presets and launchers belong
# to conf/search.yaml; recipes follow the task, cell and size: tests/test_recipes.py)
NOT_TRAIN = {"search", "launcher", "recipe", "hydra"}
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in NOT_TRAIN)
SEARCH_PRESETS = sorted(p.stem for p in (CONF_DIR / "search").glob("*.yaml"))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


def compose_train(overrides, tmp_path: Path, hydra_node: bool = False):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(
            "train", [f"paths.output_dir={tmp_path}", *overrides], return_hydra_config=hydra_node
        )


def test_every_group_has_options():
    assert {"task", "cell", "size", "data", "trainer", "logger", "callbacks", "debug"} <= set(
        GROUPS
    )
    assert {o for g, o in OPTIONS if g == "size"} == {"1x32", "1x64", "1x128", "3x32", "custom"}
    assert {o for g, o in OPTIONS if g == "trainer"} == {"default", "cpu", "gpu", "ddp"}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(group, option, tmp_path):
    # experiment presets are added on top (+experiment=...); other groups have a default
    overrides = [f"{'+' if group == 'experiment' else ''}{group}={option}"]
    if (group, option) == ("data", "dirichlet"):
        overrides.append("task=dirichlet")  # symbol sequences have no digits to classify
    cfg = compose_train(overrides, tmp_path)
    OmegaConf.resolve(cfg)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, L.LightningDataModule)
    check_task_data(cfg.task, datamodule)
    model = instantiate(cfg.model, in_features=datamodule.features)
    assert isinstance(model, TASKS[cfg.task]) and model.task == cfg.task
    assert (model.hparams.cell, model.hparams.units, model.hparams.layers) == (
        cfg.cell,
        cfg.units,
        cfg.layers,
    )
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    forced = {}
    if (group, option) == ("trainer", "gpu") and not torch.cuda.is_available():
        # a GPU trainer cannot be built without a GPU: check it asks for one, build it on the CPU
        assert cfg.trainer.accelerator == "gpu"
        forced = {"accelerator": "cpu"}
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, **forced)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("preset", SEARCH_PRESETS)
def test_every_search_preset_composes_into_trials(preset, tmp_path):
    from experiments.search import spec_of
    from seqrnn.sweeps.search_loop import override_text, trial_overrides

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        search = compose("search", [f"search={preset}", f"paths.output_dir={tmp_path}"])
        # the lowest value or the first choice of every setting the preset searches
        params = {
            name: spec["choices"][0] if "choices" in spec else spec["low"]
            for name, spec in OmegaConf.to_container(search.search.space).items()
        }
        overrides = trial_overrides(spec_of(search), params, tmp_path / "trial_000", threads=1)
        cfg = compose("train", overrides)
    OmegaConf.resolve(cfg)
    for name, value in params.items():  # every searched key exists and takes the value
        assert override_text(OmegaConf.select(cfg, name)) == override_text(value)
    assert cfg.task == search.search.train[0].removeprefix("task=")
    assert search.search.metric.replace("_", "/", 1) == search.search.monitor
    model = instantiate(cfg.model, in_features=1)
    assert model.task == cfg.task


@pytest.mark.parametrize(
    ("overrides", "layers", "units", "cell"),
    [
        ([], 1, 128, "gru"),
        (["units=64"], 1, 64, "gru"),
        (["size=3x32"], 3, 32, "gru"),
        (["size=3x32", "units=64", "cell=lstm"], 3, 64, "lstm"),
        (["layers=2"], 2, 128, "gru"),
        (["layers=2", "units=48"], 2, 48, "gru"),
    ],
)
def test_size_presets_and_plain_units_layers(overrides, layers, units, cell, tmp_path):
    cfg = compose_train(prepare_argv(overrides), tmp_path)
    assert (cfg.layers, cfg.units, cfg.cell) == (layers, units, cell)
    assert (cfg.model.layers, cfg.model.units, cfg.model.cell) == (layers, units, cell)


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("slurm_cpu", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ],
)
def test_launchers_compose_and_instantiate(launcher, target, tmp_path):
    cfg = compose_train([f"hydra/launcher={launcher}"], tmp_path, hydra_node=True)
    assert cfg.hydra.launcher._target_ == target
    built = instantiate(cfg.hydra.launcher)
    assert type(built).__name__ == target.rsplit(".", 1)[1]


def test_ddp_trainer_builds_two_cpu_processes(tmp_path):
    cfg = compose_train(["trainer=ddp", "trainer.accelerator=cpu"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.world_size == 2 and type(trainer.strategy).__name__ == "DDPStrategy"


def test_completion_config_composes(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("complete", ["ckpt=some/run", f"paths.output_dir={tmp_path}"])
    assert list(cfg.horizons) == [1, 10, 28, 300] and cfg.hidden == 300 and cfg.samples == 10
    assert isinstance(instantiate(cfg.data), MNISTSequenceDataModule)


@pytest.mark.parametrize("grid", ["classify_grid", "predict_grid"])
def test_experiment_grids_sweep_cells_and_sizes(grid, tmp_path):
    cfg = compose_train([f"+experiment={grid}"], tmp_path, hydra_node=True)
    assert cfg.task == grid.removesuffix("_grid")
    params = cfg.hydra.sweeper.params
    assert params.cell == "gru,lstm" and params.size == "1x32,1x64,1x128,3x32"


def test_debug_fast_limits_batches_and_keeps_no_checkpoints(tmp_path):
    cfg = compose_train(["debug=fast"], tmp_path)
    assert cfg.trainer.limit_train_batches <= 5 and cfg.trainer.limit_test_batches <= 5
    assert cfg.callbacks.checkpoint is None and not cfg.trainer.enable_checkpointing
    assert cfg.callbacks.last_checkpoint is None


def test_run_dirs_name_task_cell_size_and_carry_microseconds(tmp_path):
    cfg = compose_train(["cell=lstm", "size=3x32"], tmp_path, hydra_node=True)
    assert Path(cfg.hydra.run.dir).parent == Path("outputs/classify/lstm-3x32")
    stamp = Path(cfg.hydra.run.dir).name  # e.g. 2026-11-22_06-30-00_123456
    assert len(stamp.split("_")[-1]) == 6 and stamp.split("_")[-1].isdigit()
    assert cfg.hydra.sweep.dir.startswith("outputs/multirun/")


@pytest.mark.parametrize(
    "argv",
    [
        ["cell=lstm", "size=3x32", "task=classify"],
        ["cell=gru,lstm", "size=1x32,3x32", "trainer.max_epochs=3"],
        ["debug=fast", "units=64", "~callbacks.early_stopping"],
        ["+experiment=glob(bayes_*)", "cell=lstm"],
    ],
)
def test_good_group_choices_pass(argv):
    check_group_choices(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cell=foo"], "cell=foo is not a known cell (in 'cell=foo'); choose one of: gru, lstm"),
        (["task=foo"], "task=foo is not a known task (in 'task=foo'); choose one of: classify"),
        (["cell=gru,rnn"], "cell=rnn is not a known cell (in 'cell=gru,rnn')"),
        (["size=2x7"], "size=2x7 is not a known size (in 'size=2x7'); choose one of: 1x128, 1x32"),
        (["+experiment=glob(bays_*)"], "'+experiment=glob(bays_*)' matches no experiment"),
    ],
)
def test_unknown_group_choices_fail_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_group_choices(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_resume_reuses_the_runs_overrides_and_its_dir(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    (tmp_path / ".hydra" / "overrides.yaml").write_text(
        "- cell=lstm\n- size=3x32\n- trainer.max_epochs=2\n- resume=old\n"
    )
    argv = expand_resume([f"resume={tmp_path}", "trainer.max_epochs=5"])
    assert argv == [
        "cell=lstm",
        "size=3x32",
        f"resume={tmp_path}",
        "trainer.max_epochs=5",
        "skip_done=false",
        f"hydra.run.dir='{tmp_path}'",
    ]


def test_resume_of_a_dir_without_checkpoint_fails(tmp_path, capsys):
    with pytest.raises(SystemExit):
        expand_resume([f"resume={tmp_path}"])
    assert f"resume={tmp_path} is not a run dir to resume" in capsys.readouterr().err


def code_defaults(cls) -> dict:
    import inspect

    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_the_shared_model_config_holds_the_code_defaults():
    from seqrnn.models import SequenceModel

    shared = OmegaConf.load(CONF_DIR / "model" / "sequence.yaml")
    defaults = code_defaults(SequenceModel)
    interpolated = {"cell", "units", "layers"}  # from the cell and size groups
    assert set(shared) == set(defaults) - {"in_features"}
    for key in set(shared) - interpolated:
        assert shared[key] == defaults[key], key


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_task_config_sets_its_model_class_settings_at_their_code_defaults(task):
    # a task file holds what differs from the shared model config: its class's own settings
    # (at the class's defaults: one home per default) and its recipe (base settings)
    from seqrnn.models import SequenceModel

    model = OmegaConf.load(CONF_DIR / "task" / f"{task}.yaml").model
    own = {k: v for k, v in code_defaults(TASKS[task]).items() if k != "in_features"}
    base = code_defaults(SequenceModel)
    for key in model:
        if key in own and not OmegaConf.is_interpolation(model, key):
            value = model[key]
            value = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
            expected = list(own[key]) if isinstance(own[key], tuple) else own[key]
            assert value == expected, f"{task}: {key}"
        elif key in base:
            shared = OmegaConf.load(CONF_DIR / "model" / "sequence.yaml")
            assert model[key] != shared[key], f"{task}: {key} repeats the shared default"


def test_a_resumed_run_keeps_the_recipe_it_was_started_with(tmp_path):
    # a run dir made before its configuration's recipe changed: its own config says lr 0.002
    started = compose_train(["task=classify", "cell=lstm", "size=1x32"], tmp_path)
    started.model.lr, started.model.gate_bias_init = 0.002, "constant"
    started.callbacks.early_stopping = {"_target_": "x.EarlyStopping", "patience": 5}
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    OmegaConf.save(started, tmp_path / ".hydra" / "config.yaml")
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- cell=lstm\n- size=1x32\n")
    argv = [a for a in expand_resume([f"resume={tmp_path}"]) if not a.startswith("hydra.")]
    resumed = compose_train([a for a in argv if not a.startswith("resume=")], tmp_path)
    assert resumed.model.lr == 0.002 and resumed.model.gate_bias_init == "constant"
    assert resumed.callbacks.early_stopping.patience == 5
    assert compose_train(["cell=lstm", "size=1x32"], tmp_path).model.lr == 0.015  # the recipe


@pytest.mark.parametrize("enabled", [True, False])
def test_tf32_is_one_explicit_setting_for_matmuls_and_cudnn(enabled, tmp_path):
    from experiments._runs import use_tf32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        assert compose_train([], tmp_path).tf32 is False  # full float32 unless asked
        use_tf32(enabled)
        assert torch.backends.cuda.matmul.allow_tf32 is enabled
        assert torch.backends.cudnn.allow_tf32 is enabled
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize(
    ("precision", "capability", "expected"),
    [
        ("bf16-mixed", (7, 0), {"precision": "32-true"}),  # a V100: no bfloat16 arithmetic
        ("bf16-mixed", (8, 0), {}),  # an A100 runs the recipe as written
        ("32-true", (7, 0), {}),
    ],
)
def test_a_bf16_recipe_trains_in_float32_on_a_gpu_without_bf16(
    precision, capability, expected, monkeypatch, capsys
):
    from experiments import _runs
    from experiments._runs import runnable_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    trainer = OmegaConf.create({"accelerator": "auto", "precision": precision})
    assert runnable_precision(trainer) == expected
    said = capsys.readouterr().out.strip().splitlines()
    if expected:
        assert len(said) == 1 and "trainer.precision=bf16-mixed" in said[0]
        assert "Tesla V100" in said[0] and "7.0" in said[0] and "32-true" in said[0]
    else:
        assert said == []
    # a CPU with bfloat16 arithmetic keeps it whatever a GPU could do
    monkeypatch.setattr(_runs, "cpu_multiplies_bf16", lambda: True)
    cpu = OmegaConf.create({"accelerator": "cpu", "precision": precision})
    assert runnable_precision(cpu) == {}


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_a_bf16_recipe_trains_in_float32_on_a_cpu_without_bf16(accelerator, monkeypatch, capsys):
    """On an AVX2 CPU bfloat16 products are emulated, slower than float32: the run says so in
    one line and trains in float32."""
    from experiments import _runs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(_runs, "cpu_multiplies_bf16", lambda: False)
    trainer = OmegaConf.create({"accelerator": accelerator, "precision": "bf16-mixed"})
    assert _runs.runnable_precision(trainer) == {"precision": "32-true"}
    (said,) = capsys.readouterr().out.strip().splitlines()
    assert said == (
        "trainer.precision=bf16-mixed: this CPU (no AVX-512-BF16 or AMX) has no bfloat16 "
        "arithmetic; training in float32 (trainer.precision=32-true)"
    )
    float32 = OmegaConf.create({"accelerator": accelerator, "precision": "32-true"})
    assert _runs.runnable_precision(float32) == {}
