"""Every `python -m experiments.<entry> ...` line of the README and the manual still runs: the
Hydra entry points compose it (`--cfg job`; a sweep: its first job), the others parse it (their
`--help` knows every flag it uses), so a renamed option fails here instead of a reader."""

import re
import shlex
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob

from experiments._cli import CONF_DIR

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# not Hydra: they parse their own arguments
ARGPARSE_ENTRIES = {"report", "export", "bench", "gpu_check"}


def documented_commands() -> list[tuple[str, str]]:
    """``(page, command line)`` for each line of a fenced code block that runs an entry point
    (continuation lines joined)."""
    found = []
    for page in PAGES:
        in_block = False
        for line in page.read_text().replace("\\\n", " ").splitlines():
            if line.startswith("```"):
                in_block = not in_block
            elif in_block and line.strip().startswith("python -m experiments."):
                found.append((page.name, line.strip()))
    return found


COMMANDS = documented_commands()


def test_the_manual_has_commands_in_every_page():
    pages = {page for page, _ in COMMANDS}
    assert {"README.md", "usage.md", "studies.md", "sweeps.md", "extending.md"} <= pages


def first_job(args: list[str]) -> list[str]:
    """A multirun's first job: each sweep (``a,b``; ``glob(...)``) at its first value."""
    parser = OverridesParser.create()
    single = []
    for token in args:
        if "=" not in token or token.startswith("-"):
            single.append(token)
            continue
        override = parser.parse_override(token)
        key = token.split("=", 1)[0]
        if isinstance(override.value(), Glob):
            options = sorted(p.stem for p in (CONF_DIR / override.key_or_group).glob("*.yaml"))
            single.append(f"{key}={override.value().filter(options)[0]}")
        elif override.is_sweep_override():
            single.append(f"{key}={next(iter(override.sweep_string_iterator()))}")
        else:
            single.append(token)
    return single


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """What the placeholders stand for: a run dir that can be resumed, a config folder with the
    extension example's cell."""
    root = tmp_path_factory.mktemp("documented")
    run_dir = root / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- task=classify\n- size=1x32\n")
    page = (PROJECT_ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.S)
    # the page's cell of one's own, and its task of one's own with that task's recipe
    for name, marker in (("cell/mgu", "cell: mgu"), ("task/parity", "task: parity")):
        (root / "my_conf" / f"{name}.yaml").parent.mkdir(parents=True, exist_ok=True)
        (root / "my_conf" / f"{name}.yaml").write_text(next(b for b in blocks if marker in b))
    (root / "my_conf" / "recipe").mkdir()
    recipe = next(b for b in blocks if b.startswith("# @package _global_\nmodel:\n  lr:"))
    (root / "my_conf" / "recipe" / "parity.yaml").write_text(recipe)
    return {"run_dir": str(run_dir), "my_conf": str(root / "my_conf")}


@pytest.mark.parametrize(("page", "line"), COMMANDS, ids=[f"{p}: {c[18:70]}" for p, c in COMMANDS])
def test_a_documented_command_runs(page, line, places):
    line = re.sub(r"resume=(<[^>]*>|\S+)", f"resume={places['run_dir']}", line)
    line = re.sub(r"file://\S*my_conf", f"file://{places['my_conf']}", line)
    line = re.sub(r"<[^>]*>", "PLACEHOLDER", line)
    words = shlex.split(line, comments=True)
    entry = words[2].removeprefix("experiments.")
    args = words[3:]
    if entry in ARGPARSE_ENTRIES:
        command = [sys.executable, "-m", f"experiments.{entry}", "--help"]
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        for flag in (a.split("=")[0] for a in args if a.startswith("--")):
            assert flag in result.stdout, f"{flag} is not an option of experiments.{entry}"
        return
    if "-m" in args:
        args = first_job([a for a in args if a != "-m"])
    args = [a for a in args if a != "--cfg" and a != "job"]
    command = [sys.executable, "-m", f"experiments.{entry}", *args, "--cfg", "job"]
    if "--info" in args:
        command = [sys.executable, "-m", f"experiments.{entry}", *args]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{line}\n{result.stderr[-2000:]}"
