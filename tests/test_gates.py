"""The gate demonstrations hold numerically."""

import math

import torch

from seqrnn.studies import gates


def random_inputs(steps=100, seed=0):
    return (
        torch.rand(steps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
        - 1
    )


def test_gru_stores_the_current_input():
    inputs = random_inputs()
    weights = gates.gru_store_input()
    states = gates.run_gru(weights, inputs, h0=0.7)
    torch.testing.assert_close(states, torch.tanh(inputs), atol=1e-6, rtol=0)
    # the same input after a different past gives the same state
    other = gates.run_gru(weights, torch.cat([-inputs[:50], inputs[50:]]), h0=-0.3)
    torch.testing.assert_close(other[50:], states[50:], atol=1e-6, rtol=0)


def test_lstm_stores_the_current_input():
    inputs = random_inputs()
    outputs, cells = gates.run_lstm(gates.lstm_store_input(), inputs, h0=0.5, c0=2.0)
    torch.testing.assert_close(cells, torch.tanh(inputs), atol=1e-6, rtol=0)
    torch.testing.assert_close(outputs, torch.tanh(torch.tanh(inputs)), atol=1e-6, rtol=0)


def test_gru_holds_its_state_for_100_steps():
    states = gates.run_gru(gates.gru_hold_state(), random_inputs(seed=1), h0=0.42)
    assert (states - 0.42).abs().max() < 1e-3


def test_lstm_holds_its_state_for_100_steps():
    outputs, cells = gates.run_lstm(gates.lstm_hold_state(), random_inputs(seed=2), c0=0.8)
    assert (cells - 0.8).abs().max() < 1e-3
    assert (outputs - math.tanh(0.8)).abs().max() < 1e-3


def test_no_lstm_reaches_the_first_output_of_this_gru():
    gru_first = gates.run_gru(gates.gru_beyond_any_lstm(), torch.ones(1))[0]
    assert gru_first > 0.999
    # LSTMs with random, large weights, 64 units, inputs up to 100 in size: never past tanh(1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        w_ih = torch.randn(4 * 64, 3, generator=gen, dtype=torch.float64) * 50
        b = torch.randn(4 * 64, generator=gen, dtype=torch.float64) * 50
        x = torch.randn(256, 3, generator=gen, dtype=torch.float64) * 100
        first = gates.lstm_first_output(w_ih, b, x)
        # (saturated in floating point it can equal the bound, never pass it)
        assert first.abs().max() <= gates.LSTM_FIRST_OUTPUT_BOUND < gru_first
