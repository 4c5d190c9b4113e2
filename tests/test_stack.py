"""The fused GRU/LSTM stack against the reference cells written from the gate equations."""

import math

import pytest
import torch
from torch import nn

from seqrnn.errors import ConfigError
from seqrnn.nn import RecurrentStack, reference_forward

B, T, IN, H = 3, 17, 5, 8


def random_state(stack: RecurrentStack, batch: int):
    gen = torch.Generator().manual_seed(1)
    shape = (stack.layers, batch, stack.units)
    h = torch.randn(shape, generator=gen)
    return h if stack.cell == "gru" else (h, torch.randn(shape, generator=gen))


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("start", ["zeros", "given"])
def test_fused_stack_equals_reference_cells(cell, layers, start):
    torch.manual_seed(0)
    stack = RecurrentStack(cell, IN, H, layers).eval()
    x = torch.randn(B, T, IN)
    state = random_state(stack, B) if start == "given" else None
    out, final = stack(x, state)
    ref_out, ref_final, gates = reference_forward(stack, x, state)
    assert out.shape == (B, T, H)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    for got, want in zip(as_tuple(final), as_tuple(ref_final), strict=True):
        assert got.shape == (layers, B, H)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert len(gates) == layers
    assert set(gates[0]) == (
        {"r", "z", "n", "h"} if cell == "gru" else {"i", "f", "g", "o", "c", "h"}
    )
    torch.testing.assert_close(gates[-1]["h"], ref_out)
    assert all(g.shape == (B, T, H) for g in gates[-1].values())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_fused_gradients_equal_reference_gradients(cell):
    torch.manual_seed(0)
    stack = RecurrentStack(cell, IN, H, layers=2).eval()
    x = torch.randn(B, T, IN, requires_grad=True)

    def grads(forward):
        stack.zero_grad()
        x.grad = None
        out = forward(stack, x)[0]
        (out[:, -1] ** 2).sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in stack.parameters()]

    fused = grads(lambda s, v: s(v))
    reference = grads(reference_forward)
    for got, want in zip(fused, reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_stepping_with_a_carried_state_equals_one_pass(cell):
    torch.manual_seed(0)
    stack = RecurrentStack(cell, IN, H, layers=3).eval()
    x = torch.randn(B, T, IN)
    out, final = stack(x)
    state, steps = None, []
    for t in range(T):
        y, state = stack.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), out, atol=1e-6, rtol=0)
    for got, want in zip(as_tuple(state), as_tuple(final), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_orthogonal_init_makes_each_recurrent_gate_block_orthogonal(cell):
    stack = RecurrentStack(cell, IN, H, layers=2)
    for layer in range(2):
        for block in getattr(stack.rnn, f"weight_hh_l{layer}").detach().chunk(stack.gates):
            torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
    default = RecurrentStack(cell, IN, H, recurrent_init="default").rnn.weight_hh_l0.detach()
    block = default[:H]
    assert not torch.allclose(block @ block.T, torch.eye(H), atol=1e-2)


def test_lstm_forget_bias_sums_to_the_setting():
    stack = RecurrentStack("lstm", IN, H, layers=2, forget_bias=2.5)
    for layer in range(2):
        b_ih = getattr(stack.rnn, f"bias_ih_l{layer}").detach().chunk(4)
        b_hh = getattr(stack.rnn, f"bias_hh_l{layer}").detach().chunk(4)
        torch.testing.assert_close(b_ih[1] + b_hh[1], torch.full((H,), 2.5))


def test_dropout_acts_between_layers_in_training_only():
    torch.manual_seed(0)
    stack = RecurrentStack("gru", IN, H, layers=3, dropout=0.5)
    x = torch.randn(B, T, IN)
    stack.train()
    noisy_a, noisy_b = stack(x)[0], stack(x)[0]
    stack.eval()
    clean = stack(x)[0]
    assert not torch.allclose(noisy_a, noisy_b)
    torch.testing.assert_close(clean, reference_forward(stack, x)[0], atol=1e-5, rtol=0)


def test_parameters_are_those_of_torch_rnn_modules():
    stack = RecurrentStack("gru", IN, H, layers=2)
    plain = nn.GRU(IN, H, num_layers=2, batch_first=True)
    assert [k.removeprefix("rnn.") for k in stack.state_dict()] == list(plain.state_dict())
    plain.load_state_dict({k.removeprefix("rnn."): v for k, v in stack.state_dict().items()})
    x = torch.randn(B, T, IN)
    torch.testing.assert_close(plain(x)[0], stack(x)[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "rnn"}, "cell='rnn' is not allowed; choose one of: gru, lstm"),
        ({"units": 0}, "units=0 is not allowed; it must be an integer >= 1"),
        ({"layers": -1}, "layers=-1 is not allowed; it must be an integer >= 1"),
        ({"dropout": 1.0}, r"dropout=1.0 is not allowed; it must be in \[0, 1\)"),
        ({"recurrent_init": "xavier"}, "recurrent_init='xavier' is not allowed"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RecurrentStack(**{"input_size": IN, **kwargs})


def test_wrong_input_width_is_named():
    with pytest.raises(ValueError, match=r"expected x of shape \[B, T, 5\], got \[2, 3, 4\]"):
        RecurrentStack("gru", IN, H)(torch.zeros(2, 3, 4))


@pytest.mark.parametrize(("cell", "keep"), [("gru", 1), ("lstm", 1)])
def test_chrono_init_spreads_the_keep_gate_biases_over_log_spans(cell, keep):
    torch.manual_seed(0)
    steps = 784
    stack = RecurrentStack(cell, IN, 256, layers=2, gate_bias_init="chrono", chrono_steps=steps)
    for layer in range(2):
        b_ih = getattr(stack.rnn, f"bias_ih_l{layer}").detach().chunk(stack.gates)
        b_hh = getattr(stack.rnn, f"bias_hh_l{layer}").detach().chunk(stack.gates)
        bias = b_ih[keep] + b_hh[keep]
        # log(u), u ~ U(1, steps - 1): inside [0, log(steps - 1)] and spread over it
        assert bias.min() >= 0 and bias.max() <= math.log(steps - 1)
        assert bias.max() - bias.min() > 0.5 * math.log(steps - 1)
        # a unit with bias b keeps ~(1 - sigmoid(-b)) of its state: spans from 1 to ~steps
        spans = 1 / torch.sigmoid(-bias)
        assert spans.max() > steps / 2 and spans.min() < steps / 10
        if cell == "lstm":  # the input gate mirrors the forget gate
            torch.testing.assert_close(b_ih[0] + b_hh[0], -bias)
        else:  # the reset gate and the candidate keep PyTorch's init
            assert b_hh[0].abs().max() <= 1 / math.sqrt(256)
    constant = RecurrentStack(cell, IN, 256, gate_bias_init="constant").rnn.bias_ih_l0.detach()
    assert constant.abs().max() <= max(1.0, 1 / math.sqrt(256))


def test_unknown_gate_bias_init_is_named():
    with pytest.raises(ConfigError, match="gate_bias_init='zero' is not allowed"):
        RecurrentStack("gru", IN, H, gate_bias_init="zero")


def test_backend_fused_is_the_fused_kernels_or_a_clear_error(monkeypatch):
    import seqrnn.nn.stack as stack_module

    x = torch.randn(2, 5, IN)
    stack = RecurrentStack("gru", IN, H, backend="fused")
    assert stack.fused_kernel(x) is not None  # built here: the fused kernels, not nn.GRU
    monkeypatch.setattr(stack_module, "extension", lambda: None)  # a machine without them
    with pytest.raises(ConfigError, match="backend='fused' is not allowed here"):
        stack(x)
    assert RecurrentStack("gru", IN, H, backend="auto")(x)[0].shape == (2, 5, H)  # falls back
