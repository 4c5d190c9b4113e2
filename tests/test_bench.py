"""The benchmarks run, and their baselines compute what they claim to (speed is not tested)."""

import pytest
import torch

from seqrnn.bench import sampling, train_throughput
from seqrnn.models import NextPixelPredictor


def test_naive_sampler_draws_what_the_carried_state_sampler_draws():
    torch.manual_seed(0)
    model = NextPixelPredictor(units=8).eval()
    prefixes = torch.randint(0, 2, (6, 15))
    carried = model.continue_sequences(prefixes, 12, generator=torch.Generator().manual_seed(5))
    naive = sampling.naive_continue(model, prefixes, 12, torch.Generator().manual_seed(5))
    assert torch.equal(carried.pixels, naive)


def test_sampling_speedup_is_the_quotient_of_the_measured_times(monkeypatch):
    # the naive way timed at 3 s, the carried way at 1.5 s (and 0.5 s at 128 units)
    seconds = iter([1.5, 3.0, 0.5])
    monkeypatch.setattr(sampling, "timed", lambda fn, dev: next(seconds))
    report = sampling.run(units=8, images=2, samples=2, prefix=10, steps=3)
    small, wide = report["rows"]
    assert (small["units"], small["carried_s"], small["naive_s"]) == (8, 1.5, 3.0)
    assert small["speedup"] == 2.0
    assert (wide["units"], wide["carried_s"]) == (128, 0.5) and "speedup" not in wide


def test_bench_quick_writes_the_documented_json(tmp_path, capsys):
    import json

    from experiments.bench import main

    main(["sampling", "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "sampling.json").read_text())
    assert {"benchmark", "machine", "seconds", "rows"} <= set(report)
    assert report["benchmark"] == "sampling"
    assert {"device", "torch", "threads"} <= set(report["machine"])
    assert f"wrote {tmp_path / 'sampling.json'}" in capsys.readouterr().out


def test_train_throughput_benchmark_reports_every_way():
    report = train_throughput.run(cells=("gru",), sizes=("1x8",), batch_size=4, batches=2, rounds=3)
    float32, bf16 = report["rows"]
    assert report["rounds"] == 3
    assert (float32["precision"], bf16["precision"]) == ("32-true", "bf16-mixed")
    for row in (float32, bf16):
        # the ratios are the quotients of the measured speeds (rounded as reported)
        assert row["plain_vs_stack"] == pytest.approx(
            row["plain_seq_s"] / row["stack_seq_s"], abs=0.01
        )
        low, mid, high = (row[f"lightning_vs_plain{end}"] for end in ("_min", "", "_max"))
        assert low <= mid <= high
    assert bf16["vs_float32"] == pytest.approx(
        bf16["lightning_seq_s"] / float32["lightning_seq_s"], abs=0.01
    )


def test_train_throughput_ratio_is_the_median_of_interleaved_rounds(monkeypatch):
    calls = []
    # seconds a batch: stack and plain steady, lightning 2, 4, then 1 s in rounds 1, 2, 3
    lightning_rounds = iter([2.0, 4.0, 1.0])

    def measure(name):
        def seconds(model, loader, precision):
            calls.append(name)
            value = {"stack": 0.5, "plain": 1.0}.get(name) or next(lightning_rounds)
            return [value] * 3

        return seconds

    monkeypatch.setattr(
        train_throughput, "MEASURES", {n: measure(n) for n in train_throughput.MEASURES}
    )
    report = train_throughput.run(
        cells=("gru",), sizes=("1x8",), batch_size=4, rounds=3, precisions=("32-true",)
    )
    (row,) = report["rows"]
    assert calls == ["stack", "plain", "lightning"] * 3  # interleaved, round by round
    # per round lightning / plain (as speeds): 0.5, 0.25, 1.0
    assert row["lightning_vs_plain"] == 0.5
    assert (row["lightning_vs_plain_min"], row["lightning_vs_plain_max"]) == (0.25, 1.0)
    assert (row["stack_seq_s"], row["plain_seq_s"], row["plain_vs_stack"]) == (8.0, 4.0, 0.5)


def test_train_throughput_interleaves_the_precisions_in_each_round(monkeypatch):
    calls = []

    def measure(name):
        def seconds(model, loader, precision):
            calls.append((name, precision))
            return [{"32-true": 1.0, "bf16-mixed": 0.5}[precision]] * 3

        return seconds

    monkeypatch.setattr(
        train_throughput, "MEASURES", {n: measure(n) for n in train_throughput.MEASURES}
    )
    report = train_throughput.run(cells=("gru",), sizes=("1x8",), batch_size=4, rounds=2)
    one_round = [(n, p) for p in ("32-true", "bf16-mixed") for n in ("stack", "plain", "lightning")]
    assert calls == one_round * 2
    assert [row["lightning_seq_s"] for row in report["rows"]] == [4.0, 8.0]
    assert report["rows"][1]["vs_float32"] == 2.0 and "vs_float32" not in report["rows"][0]


def test_stack_backends_reports_each_fused_row_against_torch(monkeypatch):
    from seqrnn.bench import stack_backends

    if stack_backends.extension() is None:
        pytest.skip("the fused kernels are not built here (no compiler)")
    # fake speeds by backend and whether an LSTM's gates are kept (None: the torch module);
    # bfloat16 autocast doubles a fused row's
    speeds = {("torch", None): 100.0, ("fused", False): 250.0, ("fused", True): 300.0}
    factor = {"32-true": 1.0, "bf16-mixed": 2.0}
    measured = []

    def fake_seconds(stacks, proj, batch, repeats):
        measured.append([(s.cell, s.backend, keep, p) for s, keep, p in stacks])
        return [batch / (speeds[s.backend, keep] * factor[p]) for s, keep, p in stacks]

    monkeypatch.setattr(stack_backends, "gemm_gflops", lambda: 1000.0)
    monkeypatch.setattr(stack_backends, "seconds_per_batch", fake_seconds)
    report = stack_backends.run(sizes=("1x8",), batches=(4,), repeats=1)
    # each cell's variants are measured together (interleaved); an LSTM's fused path twice,
    # each fused path in both precisions
    f32, bf16 = "32-true", "bf16-mixed"
    assert measured == [
        [("gru", "torch", None, f32), ("gru", "fused", False, f32), ("gru", "fused", False, bf16)],
        [
            ("lstm", "torch", None, f32),
            ("lstm", "fused", False, f32),
            ("lstm", "fused", False, bf16),
            ("lstm", "fused", True, f32),
            ("lstm", "fused", True, bf16),
        ],
    ]
    rows = {(r["cell"], r["backend"], r["gates"], r["precision"]): r for r in report["rows"]}
    assert rows["gru", "fused", "recomputed", f32]["vs_torch"] == 2.5
    assert rows["lstm", "fused", "recomputed", f32]["vs_torch"] == 2.5
    assert rows["lstm", "fused", "kept", f32]["vs_torch"] == 3.0
    assert rows["lstm", "fused", "kept", bf16]["vs_torch"] == 6.0
    assert rows["lstm", "fused", "kept", bf16]["vs_float32"] == 2.0
    assert "vs_float32" not in rows["lstm", "fused", "kept", f32]
    assert "vs_torch" not in rows["lstm", "torch", "–", f32]
    # share of the GEMM rate: seq/s x useful FLOPs over the measured rate
    flops = stack_backends.useful_flops("lstm", 1, 8)
    assert rows["lstm", "torch", "–", f32]["of_gemm_limit"] == round(100 * flops / 1e9 / 1000, 3)


def test_stack_backends_interleaves_the_variants_round_by_round():
    from seqrnn.bench import stack_backends

    calls = []

    class Recorder:
        """A stand-in stack that records which variant ran (and under which gates choice)."""

        def __init__(self, name):
            self.name = name

        def __call__(self, x, input_proj=None):
            from seqrnn.nn.fused import keeps_gates

            calls.append((self.name, keeps_gates(1)))
            return None, torch.ones(1, requires_grad=True)

        def top_output(self, state):
            return state

    stacks = [
        (Recorder("torch"), None, "32-true"),
        (Recorder("a"), False, "32-true"),
        (Recorder("b"), True, "bf16-mixed"),
    ]
    seconds = stack_backends.seconds_per_batch(stacks, None, batch=2, repeats=3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    one_round = [("torch", False), ("a", False), ("b", True)]  # warm-up, then three rounds
    assert calls == one_round * 4


def test_cores_alternates_the_two_ways_and_reports_their_medians(monkeypatch):
    from seqrnn.bench import cores

    calls = []
    # total seq/s: one run on 2 threads 100, 300, 200; two runs of 1 thread 150, 150, 600
    measured = iter([100.0, 150.0, 300.0, 150.0, 200.0, 600.0])

    def measure(processes, threads, cell, size, batch, repeats):
        calls.append((processes, threads))
        return next(measured)

    monkeypatch.setattr(cores, "_measure", measure)
    alone, pair = cores.split("gru", "1x8", batch=4, rounds=3, repeats=1)
    assert calls == [(1, 2), (2, 1)] * 3  # interleaved, round by round
    assert (alone["seq_s"], pair["seq_s"]) == (200.0, 150.0)
    assert (alone["vs_one_run"], pair["vs_one_run"]) == (1.0, 0.75)


def test_cores_times_two_real_processes_together():
    from seqrnn.bench import cores

    total = cores._measure(2, 1, "gru", "1x8", batch=4, repeats=1)
    assert total > 0


def test_cores_a_process_that_dies_is_an_error_not_a_wait_at_the_barrier():
    from seqrnn.bench import cores

    with pytest.raises(RuntimeError, match="a benchmark process ended with exit code 1"):
        cores._measure(2, 1, "gru", "0x8", batch=4, repeats=1)  # no layers: both fail


def test_cores_gemm_errors_are_those_of_each_precision():
    from seqrnn.bench import cores

    rows = cores.gemm(batch=8, units=16, gates=3, repeats=1, peak=64)
    shapes = [(row["product"], row["shape"], row["dtype"]) for row in rows]
    assert shapes == [
        ("step", "[8, 16] x [16, 48]", "float32"),
        ("step", "[8, 16] x [16, 48]", "bfloat16"),
        ("peak", "[64, 64] x [64, 64]", "float32"),
        ("peak", "[64, 64] x [64, 64]", "bfloat16"),
    ]
    for fp32, bf16 in (rows[:2], rows[2:]):
        assert fp32["rel_error"] < 1e-6  # float32's 24-bit mantissa
        assert 1e-4 < bf16["rel_error"] < 2e-2  # bfloat16's 8 bits: about 2^-9 a product
        assert fp32["gflops"] > 0 and bf16["gflops"] > 0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_cores_precision_runs_the_classifier_as_it_runs_itself_then_in_bfloat16(cell):
    from seqrnn.bench import cores
    from seqrnn.models import SequenceClassifier
    from seqrnn.nn.reference import exact_product

    torch.manual_seed(0)
    model = SequenceClassifier(cell=cell, units=16, layers=2).eval()
    x = torch.randint(0, 2, (6, 30, 1)).float()
    with torch.no_grad():
        own = model(x)
        exact = cores.classify_with_products(model, x, exact_product)
        rounded = cores.classify_with_products(model, x, cores.bfloat16_product)
    torch.testing.assert_close(exact, own, atol=1e-5, rtol=0)
    # bfloat16's 8-bit mantissa moves the logits, a little
    assert 1e-5 < (rounded - exact).abs().max() < 0.1


def test_cores_bfloat16_product_is_the_exact_product_of_the_rounded_factors():
    from seqrnn.bench import cores

    torch.manual_seed(0)
    h, w = torch.randn(5, 8), torch.randn(24, 8)
    rounded = h.bfloat16().double() @ w.bfloat16().double().T  # brute force, float64
    torch.testing.assert_close(cores.bfloat16_product(h, w).double(), rounded, atol=1e-5, rtol=0)
    assert (cores.bfloat16_product(h, w) - h @ w.T).abs().max() > 1e-4  # not float32's


def test_sizes_and_batch_reach_each_benchmark_as_its_own_keywords():
    from experiments.bench import chosen_settings
    from seqrnn.bench import cores, neighbours, sampling, stack_backends, train_throughput

    sizes = ("1x64", "1x128")
    assert chosen_settings(stack_backends.run, sizes, 128) == {"sizes": sizes, "batches": (128,)}
    assert chosen_settings(train_throughput.run, sizes, 128) == {
        "sizes": sizes,
        "batch_size": 128,
    }
    assert chosen_settings(neighbours.run, sizes, 64) == {"size": "1x64", "batch": 64}
    assert chosen_settings(cores.run, None, 32) == {"batch": 32}
    assert chosen_settings(sampling.run, sizes, 32) == {}  # neither: nothing passed
