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
    report = train_throughput.run(cells=("gru",), sizes=("1x8",), batch_size=4, batches=2)
    (row,) = report["rows"]
    for key in ("stack_seq_s", "plain_seq_s", "lightning_seq_s"):
        assert row[key] > 0
    assert row["lightning_vs_plain"] == round(row["lightning_seq_s"] / row["plain_seq_s"], 3)
