"""How the sweep's job watcher (seqrnn.sweeps.slurm.QueueWatcher) reads ``squeue`` where
``sacct`` fails: a job is taken to have ended only when two answers agree, a state on the way
(a requeue's) is not an end, and a controller that does not answer is no news. A scripted
``squeue`` and ``sacct`` on PATH answer; no cluster is needed."""

import json
import os
import stat
import sys
import textwrap

import pytest

from seqrnn.sweeps import slurm

# Answers in order, one per call: [stdout, stderr, exit status]; the last one repeats.
FAKE_SQUEUE = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    here = Path(os.environ["FAKE_SLURM_DIR"])
    answers = json.loads((here / "answers.json").read_text())
    calls = here / "calls"
    n = int(calls.read_text()) if calls.exists() else 0
    calls.write_text(str(n + 1))
    out, err, status = answers[min(n, len(answers) - 1)]
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(status)
    """
)


@pytest.fixture
def fake_squeue(tmp_path, monkeypatch):
    """Puts a scripted ``squeue`` (and a failing ``sacct``) first on PATH; returns a function
    that sets its answers and gives back how many times it was called since."""
    for name, body in [("squeue", FAKE_SQUEUE), ("sacct", "import sys; sys.exit(1)\n")]:
        script = tmp_path / name
        script.write_text(f"#!{sys.executable}\n{body}")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(tmp_path))
    monkeypatch.setattr(slurm, "CONFIRM_AFTER_S", 0.0)

    def answer(*answers):
        (tmp_path / "answers.json").write_text(json.dumps([list(a) for a in answers]))
        (tmp_path / "calls").write_text("0")

    return answer


def listed(state: str) -> tuple[str, str, int]:
    return (f"7|{state}\n", "", 0)


NOT_LISTED = ("", "", 0)
UNKNOWN_ID = ("", "slurm_load_jobs error: Invalid job id specified\n", 1)
NO_CONTROLLER = ("", "slurm_load_jobs error: Unable to contact slurm controller\n", 1)


def watch(answer, *answers) -> tuple[bool, str]:
    """One update of a watcher of job 7 over ``answers``: (ended?, the state it holds)."""
    answer(*answers)
    watcher = slurm.QueueWatcher(delay_s=60)
    watcher.register_job("7")
    watcher.update()
    return watcher.is_done("7", mode="cache"), watcher.get_state("7", mode="cache")


def test_a_job_gone_from_the_queue_in_two_answers_has_ended(fake_squeue):
    assert watch(fake_squeue, NOT_LISTED, NOT_LISTED) == (True, slurm.LEFT_QUEUE)
    assert watch(fake_squeue, UNKNOWN_ID, UNKNOWN_ID) == (True, slurm.LEFT_QUEUE)
    assert watch(fake_squeue, listed("CANCELLED"), listed("CANCELLED")) == (True, "CANCELLED")


def test_one_answer_that_does_not_list_a_running_job_is_not_its_end(fake_squeue):
    # the flake this guards against: a job mid-requeue read once as gone, and the sweep ended
    assert watch(fake_squeue, NOT_LISTED, listed("PENDING")) == (False, "UNKNOWN")
    assert watch(fake_squeue, listed("FAILED"), listed("REQUEUED")) == (False, "UNKNOWN")


@pytest.mark.parametrize("state", sorted(slurm.NOT_ENDED))
def test_a_state_on_the_way_is_not_an_end(fake_squeue, state):
    assert watch(fake_squeue, listed(state)) == (False, state)


def test_a_controller_that_does_not_answer_is_no_news(fake_squeue):
    assert watch(fake_squeue, NO_CONTROLLER) == (False, "UNKNOWN")
    assert watch(fake_squeue, listed("RUNNING")) == (False, "RUNNING")
