"""The GPU self-check (`make gpu-check`): its CPU run passes here, a check that misses its
tolerance fails the command, and a machine without CUDA is told so in one line."""

import pytest
from conftest import run_entry

from seqrnn.bench import gpu_check


def test_the_self_check_passes_on_the_cpu():
    result = run_entry("gpu_check", "--device", "cpu")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    names = [line[4:].strip() for line in lines]
    assert all(line.startswith("ok") for line in lines), result.stdout
    for part in ("stack gru 2x32: gradients", "stack lstm 1x32: outputs", "completion lstm"):
        assert any(name.startswith(part) for name in names), names
    assert any(name.startswith("inpainting gru") for name in names)
    for run in ("classify", "predict", "dirichlet", "classify, precision bf16-mixed"):
        assert any(name.startswith(f"run {run}: completed") for name in names), names
    assert f"{len(lines)} of {len(lines)} checks passed on cpu" in result.stdout


def test_a_check_past_its_tolerance_fails_the_command(monkeypatch, capsys):
    from experiments.gpu_check import main

    monkeypatch.setattr(gpu_check, "OUTPUT_TOLERANCE", 0.0)  # float32 never equals float64
    with pytest.raises(SystemExit) as stopped:
        main(["--device", "cpu", "--no-runs"])
    assert stopped.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL  stack gru 1x32: outputs: largest difference" in out
    assert "ok    stack gru 1x32: gradients" in out


def test_no_cuda_is_one_line(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_entry("gpu_check")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda: no CUDA device here" in lines[0], result.stderr
