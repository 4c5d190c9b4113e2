"""A cell and a task of one's own, as docs/extending.md shows them: the classes and their configs
taken from that page, defined outside seqrnn, trained through `experiments.train`, then
evaluated, completed, in-painted, analyzed and reported on."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PROJECT_ROOT, TINY_VAL, run_entry

from seqrnn.errors import ConfigError
from seqrnn.nn import RecurrentStack, cell_names

PAGE = (PROJECT_ROOT / "docs" / "extending.md").read_text()


def block(language: str, contains: str) -> str:
    """The page's code block in ``language`` that holds ``contains``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", PAGE, re.S)
    return next(b for b in blocks if contains in b)


@pytest.fixture(scope="module")
def user_project(tmp_path_factory) -> Path:
    """A folder outside seqrnn with the page's my_cells.py and my_conf/cell/mgu.yaml."""
    root = tmp_path_factory.mktemp("user_project")
    (root / "my_cells.py").write_text(block("python", "class MinimalGatedCell"))
    (root / "my_conf" / "cell").mkdir(parents=True)
    (root / "my_conf" / "cell" / "mgu.yaml").write_text(block("yaml", "cell: mgu"))
    (root / "my_tasks.py").write_text(block("python", "class DigitParity"))
    for group, marker in (("task", "task: parity"), ("recipe", "max_epochs: 10")):
        (root / "my_conf" / group).mkdir()
        (root / "my_conf" / group / "parity.yaml").write_text(block("yaml", marker))
    return root


def run(user_project: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    return run_entry(module, *args, env={"PYTHONPATH": str(user_project)})


def study(user_project, tiny_mnist, entry, run_dir, out_dir, made, *args) -> dict:
    """``experiments.<entry>`` on the model of ``run_dir``: the JSON it made in ``out_dir``."""
    result = run(
        user_project,
        entry,
        f"ckpt={run_dir}",
        *data_args(tiny_mnist),
        *args,
        f"hydra.run.dir={out_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out_dir / made).read_text())


def data_args(tiny_mnist) -> list[str]:
    return [f"data.root={tiny_mnist}", "data.verify=false", f"data.val_size={TINY_VAL}"]


def train(user_project, tiny_mnist, run_dir, *args) -> dict:
    result = run(
        user_project,
        "train",
        "cell=mgu",
        "size=1x32",
        f"hydra.searchpath=[file://{user_project / 'my_conf'}]",
        *data_args(tiny_mnist),
        "data.batch_size=16",
        "data.eval_batch_size=32",
        "model.gate_bias_init=chrono",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
        *args,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def test_a_cell_of_ones_own_trains_evaluates_completes_inpaints(user_project, tiny_mnist, tmp_path):
    run_dir = tmp_path / "predict"
    results = train(
        user_project,
        tiny_mnist,
        run_dir,
        "task=predict",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
    )
    assert results["cell"] == "mgu" and results["status"] == "completed"
    # 32 units: input map 1 -> 32, the cell's three maps, the per-step head
    assert results["params"] == (32 + 32) + (32 * 64 + 64) + 2 * 32 * 32 + (32 + 1)
    assert 0 < results["test_loss"] < 1.0  # nats per pixel, from a model that read the pixels
    evaluation = study(
        user_project,
        tiny_mnist,
        "evaluate",
        run_dir,
        tmp_path / "evaluate",
        "evaluation.json",
        "limit_batches=1",
    )
    assert evaluation["cell"] == "mgu"
    assert evaluation["val_loss"] == pytest.approx(results["val_loss"], rel=1e-4)
    table = study(
        user_project,
        tiny_mnist,
        "complete",
        run_dir,
        tmp_path / "complete",
        "completion.json",
        "count=3",
        "hidden=20",
        "horizons=[1,20]",
        "samples=2",
        "shown_samples=1",
        "scratch=2",
    )["table"]
    assert [row["n"] for row in table] == [1, 20]
    metrics = study(
        user_project,
        tiny_mnist,
        "inpaint",
        run_dir,
        tmp_path / "inpaint",
        "inpaint.json",
        "count=3",
        "dataset=two_by_two",
        "shown=1",
    )["metrics"]
    assert 0.0 <= metrics["map_pixel_acc"] <= 1.0 and 0.0 <= metrics["truth_mass"] <= 1.0


def test_a_cell_of_ones_own_classifies_and_is_analyzed(user_project, tiny_mnist, tmp_path):
    run_dir = tmp_path / "classify"
    results = train(
        user_project,
        tiny_mnist,
        run_dir,
        "task=classify",
        "data.order=row",
        "trainer.max_epochs=2",
    )
    assert results["cell"] == "mgu" and 0.0 <= results["test_acc"] <= 1.0
    analysis = study(
        user_project,
        tiny_mnist,
        "analyze",
        run_dir,
        tmp_path / "analyze",
        "analysis.json",
        "count=10",
    )
    assert len(analysis["accuracy_by_step"]) == 28  # the read-out after every row


def test_a_task_of_ones_own_trains_evaluates_and_is_reported(user_project, tiny_mnist, tmp_path):
    runs = tmp_path / "runs"
    results = train(
        user_project,
        tiny_mnist,
        runs / "parity-gru-1x32",
        "task=parity",
        "cell=gru",
        "data.order=row",
        "trainer.max_epochs=2",
    )
    # two classes: the head ends in 2 outputs; the checkpoint names the class; the recipe's rate
    assert results["task"] == "parity" and results["status"] == "completed"
    ckpt = torch.load(next((runs / "parity-gru-1x32").rglob("*.ckpt")), weights_only=False)
    last = [v for k, v in ckpt["state_dict"].items() if k.startswith("head.") and v.dim() == 2]
    assert last[-1].shape[0] == 2 and ckpt["task_class"] == "my_tasks.DigitParity"
    assert 0.0 <= results["test_acc"] <= 1.0
    config = (runs / "parity-gru-1x32" / ".hydra" / "config.yaml").read_text()
    assert "_target_: my_tasks.DigitParity" in config and "lr: 0.005" in config
    evaluation = study(
        user_project,
        tiny_mnist,
        "evaluate",
        runs / "parity-gru-1x32",
        tmp_path / "evaluate",
        "evaluation.json",
        "limit_batches=1",
    )
    assert evaluation["task"] == "parity"
    assert evaluation["val_acc"] == pytest.approx(results["val_acc"], abs=1e-6)
    reported = run(user_project, "report", str(runs), "--out", str(tmp_path / "report"))
    assert reported.returncode == 0, reported.stderr[-3000:]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "parity" in report and f"{results['test_acc']:.4f}" in report
    # a job its class does not list: one line naming the task and what the job takes
    refused = study_refused(user_project, "complete", runs / "parity-gru-1x32", tiny_mnist)
    assert "belongs to task=parity; complete takes task=predict" in refused


def study_refused(user_project, entry, run_dir, tiny_mnist) -> str:
    result = run(user_project, entry, f"ckpt={run_dir}", *data_args(tiny_mnist))
    assert result.returncode == 2, result.stderr[-3000:]
    return result.stderr


class Doubling(torch.nn.Module):
    pass


def test_the_registry_names_what_it_takes(user_project):
    sys.path.insert(0, str(user_project))
    try:
        stack = RecurrentStack("my_cells.MinimalGatedCell", input_size=3, units=4, layers=2)
    finally:
        sys.path.remove(str(user_project))
    assert stack.cell == "mgu" and "mgu" in cell_names()
    assert [name for name, _ in stack.named_parameters()][0].startswith("cells.0.")
    with pytest.raises(ConfigError, match="cell='tests.nowhere.Cell' cannot be imported"):
        RecurrentStack("tests.nowhere.Cell", input_size=3)
    with pytest.raises(ConfigError, match="is not a cell: a cell is a subclass of"):
        RecurrentStack(f"{__name__}.Doubling", input_size=3)
    with pytest.raises(ConfigError, match="backend='fused' is not allowed for cell='mgu'"):
        RecurrentStack("mgu", input_size=3, backend="fused")


def test_the_step_loop_matches_itself_step_by_step_and_with_lengths(user_project):
    """forward, step (sampling) and final_states (in-painting) of a registered cell agree."""
    sys.path.insert(0, str(user_project))
    try:
        stack = RecurrentStack("my_cells.MinimalGatedCell", input_size=3, units=5, layers=2)
    finally:
        sys.path.remove(str(user_project))
    stack.eval()
    x = torch.randn(4, 7, 3)
    out, state = stack(x)
    carried, outs = None, []
    for t in range(7):
        y, carried = stack.step(x[:, t], carried)
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, 1), out)
    torch.testing.assert_close(carried, state)
    lengths = torch.tensor([7, 3, 1, 5])
    finals = stack.final_states(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(finals[:, i], stack(x[i : i + 1, :n])[1][:, 0])
