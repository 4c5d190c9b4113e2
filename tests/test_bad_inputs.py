"""Every option the README and the manual use, given a bad value (a bad type, out of range, an
unknown choice), is one line on stderr that names it, exit status 2, nothing written. A new option
in a documented command needs its row here: the first test fails until it has one."""

import shlex

import pytest
from conftest import run_entry
from test_docs_commands import COMMANDS

# Settings of Hydra itself in documented commands: Hydra reports their errors.
HYDRA_OWN = {"--cfg", "hydra.searchpath"}
MISSING = "/nonexistent/seqrnn"

# (entry point, arguments ending with the bad one, what the one line must say)
BAD = [
    ("train", ["task=foo"], "task=foo is not a known task"),
    ("train", ["cell=foo"], "cell=foo is not a known cell"),
    ("train", ["size=9x9"], "size=9x9 is not a known size"),
    ("train", ["units=0"], "units=0 is not allowed; it must be an integer >= 1"),
    ("train", ["units=abc"], "units='abc' is not allowed; it must be an integer >= 1"),
    ("train", ["layers=-1"], "layers=-1 is not allowed; it must be an integer >= 1"),
    ("train", ["threads=-2"], "threads=-2 is not allowed; it must be an integer >= 1"),
    ("train", ["threads=x"], "threads='x' is not allowed"),
    ("train", ["trainer.max_epochs=-1"], "trainer.max_epochs=-1 is not allowed with model.lr_sc"),
    ("train", ["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not allowed"),
    ("train", ["data.order=diagonal"], "data.order='diagonal' is not allowed; choose one of"),
    ("train", ["data.permutation_seed=-3"], "data.permutation_seed=-3 is not allowed"),
    ("train", ["-m", "cell=gru,lstm", "--cfg", "job"], "--multirun and --cfg cannot go together"),
    ("train", ["debug=foo"], "debug=foo is not a known debug"),
    ("train", ["+experiment=foo"], "experiment=foo is not a known experiment"),
    ("train", ["hydra/launcher=foo"], "hydra/launcher=foo is not a known hydra/launcher"),
    ("train", [f"resume={MISSING}"], f"resume={MISSING} is not a run dir to resume"),
    ("train", ["callbacks.timer.duration=abc"], "callbacks.timer.duration='abc' is not allowed"),
    ("train", ["callbacks.early_stopping=5"], "callbacks.early_stopping=5 is not allowed"),
    # types, ranges and keys, checked on the composed config before anything is written
    ("train", ["model.lr=abc"], "model.lr='abc' is not allowed; it must be a number > 0"),
    ("train", ["seed=abc"], "seed='abc' is not allowed; it must be an integer in 0..4294967295"),
    ("train", ["model.head_batchnorm=maybe"], "model.head_batchnorm='maybe' is not allowed"),
    ("train", ["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 is not allowed"),
    ("train", ["data.batch_size=100000000"], "data.batch_size=100000000 is not allowed"),
    ("train", ["units=100000"], "units=100000, layers=1, data.batch_size="),
    ("train", ["trainer.limit_train_batches=-5"], "trainer.limit_train_batches=-5 is not all"),
    ("train", ["model.recurrent_init=xx"], "model.recurrent_init='xx' is not allowed; choose"),
    ("train", ["trainer.max_epoch=1"], "did you mean trainer.max_epochs?"),
    ("train", ["taks=predict"], "taks is not an option of experiments.train; did you mean task?"),
    ("train", ["data.root=/tmp/(x)"], "needs quotes inside the override: 'data.root=\"/tmp/(x)\"'"),
    ("train", ["data.root={classify}"], "is a file; give the folder of the four MNIST files"),
    ("train", ["hydra.run.dir={classify}/run"], "cannot be made: "),
    ("train", ["hydra.run.dir=/proc/seqrnn/run"], "hydra.run.dir=/proc/seqrnn/run cannot be"),
    (
        "search",
        ["storage=postgresql+psycopg://u:secret@127.0.0.1:1/x"],
        "storage=postgresql+psycopg://u:***@127.0.0.1:1/x cannot be used",
    ),
    ("evaluate", [f"ckpt={MISSING}.ckpt"], f"checkpoint {MISSING}.ckpt does not exist"),
    ("evaluate", ["ckpt={classify}", "limit_batches=-1"], "limit_batches=-1 is not allowed"),
    ("evaluate", ["ckpt={classify}", "limit_batches=0"], "limit_batches=0 is not allowed"),
    ("evaluate", ["ckpt={classify}", "device=gpu"], "device='gpu' is not allowed; choose one"),
    ("inpaint", ["ckpt={predict}", "max_hidden=40"], "max_hidden=40 is not allowed; it must be"),
    ("evaluate", ["ckpt=pretrained:foo"], "ckpt=pretrained:foo is not a shipped checkpoint"),
    ("complete", ["ckpt={classify}"], "belongs to task=classify; complete takes task=predict"),
    ("complete", ["ckpt={predict}", "count=0"], "count=0 is not allowed"),
    ("complete", ["ckpt={predict}", "count=abc"], "count='abc' is not allowed"),
    ("complete", ["ckpt={predict}", "count=4", "horizons=[0]"], "horizons=[0] is not allowed"),
    ("complete", ["ckpt={predict}", "count=4", "samples=0"], "samples=0 is not allowed"),
    ("inpaint", ["ckpt={classify}"], "belongs to task=classify; inpaint takes task=predict"),
    ("inpaint", ["ckpt={predict}", "count=4", "dataset=foo"], "in-painting file foo does not"),
    ("inpaint", ["ckpt={predict}", "max_hidden=0"], "max_hidden=0 is not allowed"),
    ("inpaint", ["ckpt={predict}", "max_hidden=abc"], "max_hidden='abc' is not allowed"),
    ("analyze", [f"ckpt={MISSING}.ckpt"], f"checkpoint {MISSING}.ckpt does not exist"),
    ("analyze", ["ckpt={classify}", "count=0"], "count=0 is not allowed"),
    ("analyze", ["ckpt={classify}", "image=-1"], "image=-1 is not allowed"),
    ("analyze", ["ckpt={classify}", "image=abc"], "image='abc' is not allowed"),
    ("search", ["search=foo"], "search=foo is not a known search"),
    ("search", ["trials=0"], "trials=0 is not allowed; it must be an integer >= 1"),
    ("search", ["timeout=-5"], "timeout=-5 is not allowed; it must be seconds > 0, or null"),
    ("search", ["timeout=abc"], "timeout='abc' is not allowed"),
    ("study", ["dry_run=maybe"], "dry_run='maybe' is not allowed; it must be true or false"),
    ("study", ["dry_run=true", "cells=[foo]"], "cells=['foo']: foo is not a known cell"),
    ("study", ["dry_run=true", "sizes=[9x9]"], "sizes=['9x9']: 9x9 is not a known size"),
    (
        "study",
        ["dry_run=true", "workers=0"],
        "workers=0 is not allowed; it must be an integer >= 1",
    ),
    (
        "study",
        ["dry_run=true", "budgets.classify={{1x32: 1h}}"],  # {{ }}: the rows go through format
        "budgets.classify.1x32='1h' is not allowed; give days:hours:minutes:seconds",
    ),
    ("gpu_check", ["--device=tpu"], "--device tpu is not a device seqrnn checks"),
    ("report", ["/", "--out={classify}"], "is a file; give the folder to write the report into"),
    ("bench", ["--threads=0"], "--threads 0: give a number of threads >= 1"),
    ("bench", ["--sizes=1x32,foo"], "--sizes 1x32,foo: give <layers>x<units>[,...]"),
    ("bench", ["--batch=abc"], "argument --batch: invalid int value: 'abc'"),
    ("search", ["workers=0"], "workers=0 is not allowed; it must be an integer >= 1"),
    ("search", ["launcher=pbs"], "launcher=pbs is not a known launcher"),
    (
        "search",
        ["launcher=slurm"],
        "launcher=slurm needs storage=<database URL> that every node reaches",
    ),
    ("search", ["launcher=slurm", "launcher.cpus_per_task=0"], "cpus_per_task=0 is not allowed"),
    ("search", ["launcher=slurm", "launcher.time_min=1h"], "time_min='1h' is not allowed"),
    (
        "search",
        ["launcher.partition=cpu"],
        "launcher.partition is a setting of launcher=slurm; choose it first",
    ),
    ("search", ["heartbeat_seconds=0"], "heartbeat_seconds=0 is not allowed"),
    (
        "search",
        ["heartbeat_seconds=30", "grace_seconds=20"],
        "grace_seconds=20 is not allowed; it must be more than heartbeat_seconds=30",
    ),
    ("train", ["data=mnist_permutd"], "data=mnist_permutd is not a known data"),
    ("train", ["logger=foo"], "logger=foo is not a known logger (in 'logger=foo'); choose one"),
    ("train", ["logger=[tensorboard,foo]"], "logger=foo is not a known logger"),
    (
        "train",
        ["trainer.precision=17"],
        "trainer.precision=17 is not allowed; choose one of: 32-true, 32, bf16-mixed, 16-mixed",
    ),
]


def option(token: str) -> str:
    return token.split("=", 1)[0].lstrip("+~")


def test_every_documented_option_has_a_bad_value_here():
    covered = {(entry, option(args[-1])) for entry, args, _ in BAD}
    missing = set()
    for _, line in COMMANDS:
        words = shlex.split(line.split(" #")[0])
        entry = words[2].removeprefix("experiments.")
        for word in words[3:]:
            if "=" in word and not word.startswith("-") or word.startswith("--"):
                key = option(word)
                if key not in HYDRA_OWN and (entry, key) not in covered:
                    missing.add(f"{entry} {key}")
    assert not missing, f"documented options without a bad-value row in BAD: {sorted(missing)}"


@pytest.mark.parametrize(("entry", "args", "message"), BAD, ids=[" ".join(a) for _, a, _ in BAD])
def test_a_bad_value_is_one_line_and_exit_2(
    entry, args, message, tiny_mnist, checkpoints, tmp_path
):
    args = [a.format(**{k: str(v) for k, v in checkpoints.items()}) for a in args]
    out = tmp_path / "out"
    if entry in ("train", "evaluate", "complete", "inpaint", "analyze"):
        if not any(a.startswith("data.root=") for a in args):
            args += [f"data.root={tiny_mnist}"]
        args += ["data.verify=false", "data.val_size=20"]
    if entry == "train":
        args += ["debug=fast"]
    hydra = entry not in ("gpu_check", "bench", "report", "export")  # argparse takes no overrides
    if hydra and not any(a.startswith("hydra.run.dir=") for a in args):
        args += [f"hydra.run.dir={out}"]
    if entry == "study":
        args += [f"out={out}", f"docs={out / 'docs'}", f"pretrained={out / 'pretrained'}"]
    result = run_entry(entry, *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert message in lines[0]
    assert not out.exists()  # checked before anything was written, or tidied up after


NO_GPU = "this machine has no CUDA GPU that torch can use"


@pytest.mark.parametrize(
    ("entry", "args"),
    [("train", ["trainer.accelerator=gpu"]), ("evaluate", ["ckpt={classify}", "device=cuda"])],
)
def test_a_device_that_is_not_there_is_one_line(entry, args, tiny_mnist, checkpoints, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the device is there")
    args = [a.format(**{k: str(v) for k, v in checkpoints.items()}) for a in args]
    out = tmp_path / "out"
    common = [f"data.root={tiny_mnist}", "data.verify=false", f"hydra.run.dir={out}"]
    result = run_entry(entry, *args, *common)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and NO_GPU in lines[0], result.stderr
    assert not out.exists()
