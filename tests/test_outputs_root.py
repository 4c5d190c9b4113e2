"""One outputs root: `paths.root=DIR` (or `$SEQRNN_OUTPUTS`) moves every run, sweep, evaluation,
study and benchmark dir, and nothing is written under outputs/ where the command runs."""

import json
from pathlib import Path

from conftest import PROJECT_ROOT, run_entry, tiny_overrides

from seqrnn.layout import OUTPUTS_VARIABLE, RESULTS_FILE, RUN_CONFIG


def run_in(cwd: Path, module: str, *args: str, env: dict[str, str] | None = None):
    """``python -m experiments.<module> ARGS`` started in ``cwd`` (the project importable, no
    outputs root in the environment unless ``env`` gives one); it must succeed."""
    extra = {"PYTHONPATH": str(PROJECT_ROOT), OUTPUTS_VARIABLE: "", **(env or {})}
    result = run_entry(module, *args, env=extra, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_paths_root_moves_every_dir_and_nothing_lands_in_outputs(tiny_mnist, tmp_path):
    work, root = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    tiny = [*tiny_overrides(tiny_mnist), "data.order=row", "trainer.max_epochs=1"]
    run_in(work, "train", *tiny, f"paths.root={root}")
    (run_dir,) = (root / "classify" / "gru-1x32").iterdir()
    assert (run_dir / RESULTS_FILE).is_file() and (run_dir / RUN_CONFIG).is_file()

    run_in(work, "train", "-m", "seed=1,2", *tiny, f"paths.root={root}")
    (sweep,) = (root / "multirun").iterdir()
    assert len(list(sweep.glob(f"*/{RESULTS_FILE}"))) == 2

    data = (f"data.root={tiny_mnist}", "data.verify=false")
    run_in(work, "evaluate", f"ckpt={run_dir}", *data, "limit_batches=1", f"paths.root={root}")
    (evaluation,) = (root / "evaluate").iterdir()
    assert (evaluation / "evaluation.json").is_file()

    plan = run_in(work, "study", "dry_run=true", f"paths.root={root}").stdout
    assert f"hydra.run.dir={root}/study/classify/classify-gru-1x32" in plan

    # the tools without a config read the same root from the environment
    run_in(work, "bench", "--quick", "sampling", env={OUTPUTS_VARIABLE: str(root)})
    assert json.loads((root / "bench" / "sampling.json").read_text())["benchmark"] == "sampling"

    assert not (work / "outputs").exists(), sorted(map(str, (work / "outputs").rglob("*")))
    assert sorted(p.name for p in root.iterdir()) == [
        "bench",
        "classify",
        "evaluate",
        "multirun",
        "study",  # the dry run's log
    ]
