"""The benchmarks run, and their baselines compute what they claim to (speed is not tested)."""

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


def test_sampling_benchmark_reports_both_ways():
    report = sampling.run(units=8, images=2, samples=2, prefix=10, steps=3)
    first = report["rows"][0]
    assert first["naive_s"] > 0 and first["carried_s"] > 0 and first["speedup"] > 0
    assert report["rows"][1]["units"] == 128


def test_train_throughput_benchmark_reports_every_way():
    report = train_throughput.run(cells=("gru",), sizes=("1x8",), batch_size=4, batches=2, rounds=3)
    (row,) = report["rows"]
    assert report["rounds"] == 3
    for key in ("stack_seq_s", "plain_seq_s", "lightning_seq_s"):
        assert row[key] > 0
    assert {"lightning_vs_plain_min", "lightning_vs_plain_max"} <= set(row)


def test_train_throughput_ratio_is_the_median_of_interleaved_rounds(monkeypatch):
    calls = []
    # seconds a batch: stack and plain steady, lightning 2, 4, then 1 s in rounds 1, 2, 3
    lightning_rounds = iter([2.0, 4.0, 1.0])

    def measure(name):
        def seconds(model, loader):
            calls.append(name)
            value = {"stack": 0.5, "plain": 1.0}.get(name) or next(lightning_rounds)
            return [value] * 3

        return seconds

    monkeypatch.setattr(
        train_throughput, "MEASURES", {n: measure(n) for n in train_throughput.MEASURES}
    )
    report = train_throughput.run(cells=("gru",), sizes=("1x8",), batch_size=4, rounds=3)
    (row,) = report["rows"]
    assert calls == ["stack", "plain", "lightning"] * 3  # interleaved, round by round
    # per round lightning / plain (as speeds): 0.5, 0.25, 1.0
    assert row["lightning_vs_plain"] == 0.5
    assert (row["lightning_vs_plain_min"], row["lightning_vs_plain_max"]) == (0.25, 1.0)
    assert (row["stack_seq_s"], row["plain_seq_s"], row["plain_vs_stack"]) == (8.0, 4.0, 0.5)
