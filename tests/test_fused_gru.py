"""The fused CPU GRU against nn.GRU: values, gradients, gradcheck, training, selection, fallback."""

import warnings

import lightning as L
import pytest
import torch
from torch import nn

from seqrnn.errors import ConfigError
from seqrnn.models import SequenceClassifier
from seqrnn.nn import RecurrentStack, fused_gru
from seqrnn.nn.fused_gru import FusedGRULayer, extension

pytestmark = pytest.mark.skipif(extension() is None, reason="the fused GRU could not be built")


def run_both(stack: RecurrentStack, x, h0, proj=None):
    """Outputs, final state and every gradient, through the fused kernel and through nn.GRU."""
    results = []
    for backend in ("fused", "torch"):
        stack.backend = backend
        stack.zero_grad()
        if proj is not None:
            proj.zero_grad()
        x.grad = None
        h = h0.clone().requires_grad_(True)
        out, final = stack(x, h, input_proj=proj)
        (out.square().sum() + (final * 3).sum()).backward()
        params = [*stack.parameters(), *(proj.parameters() if proj is not None else [])]
        results.append([out, final, x.grad, h.grad, *(p.grad for p in params)])
    stack.backend = "auto"
    return results


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize(("batch", "steps", "inputs", "units"), [(3, 17, 5, 8), (7, 40, 1, 33)])
def test_fused_equals_nn_gru_with_all_gradients(layers, batch, steps, inputs, units):
    torch.manual_seed(layers + units)
    stack = RecurrentStack("gru", inputs, units, layers)
    x = torch.randn(batch, steps, inputs, requires_grad=True)
    h0 = torch.randn(layers, batch, units)
    fused, reference = run_both(stack, x, h0)
    for got, want in zip(fused, reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_folding_the_input_affine_changes_nothing():
    torch.manual_seed(0)
    stack, proj = RecurrentStack("gru", 16, 16, 2), nn.Linear(1, 16)
    x = torch.randint(0, 2, (4, 50, 1)).float().requires_grad_(True)
    fused, reference = run_both(stack, x, torch.zeros(2, 4, 16), proj)
    for got, want in zip(fused, reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_gradcheck_in_float64():
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4).double()
    weights = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0]
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    module = extension()
    assert torch.autograd.gradcheck(
        lambda *args: FusedGRULayer.apply(*args, module), (x, h0, *weights)
    )


def test_dropout_between_layers_in_training_only():
    torch.manual_seed(0)
    stack = RecurrentStack("gru", 4, 8, 3, dropout=0.5, backend="fused")
    x = torch.randn(2, 10, 4)
    a, b = stack(x)[0], stack(x)[0]
    assert not torch.allclose(a, b)
    stack.eval()
    torch.testing.assert_close(stack(x)[0], stack.rnn(x)[0], atol=1e-5, rtol=1e-4)


def test_a_training_run_matches_nn_gru(tiny_mnist):
    from conftest import quiet_trainer, tiny_rows

    losses = {}
    for backend in ("torch", "fused"):
        L.seed_everything(0, verbose=False)
        data = tiny_rows(tiny_mnist)
        model = SequenceClassifier(in_features=28, units=16, lr=1e-2, backend=backend)
        trainer = quiet_trainer(max_epochs=4, limit_val_batches=0)
        trainer.fit(model, datamodule=data)
        losses[backend] = trainer.callback_metrics["train/loss"].item()
    assert losses["fused"] == pytest.approx(losses["torch"], abs=2e-3)


def test_checkpoints_are_interchangeable():
    fused = SequenceClassifier(units=8, backend="fused")
    plain = SequenceClassifier(units=8, backend="torch")
    plain.load_state_dict(fused.state_dict())
    x = torch.randint(0, 2, (3, 30, 1)).float()
    fused.eval(), plain.eval()
    torch.testing.assert_close(fused(x), plain(x), atol=1e-5, rtol=1e-4)


def test_selection():
    x = torch.zeros(1, 2, 3)
    assert RecurrentStack("gru", 3, 4).fused_kernel(x) is extension()
    assert RecurrentStack("gru", 3, 4, backend="torch").fused_kernel(x) is None
    assert RecurrentStack("lstm", 3, 4).fused_kernel(x) is None
    with pytest.raises(ConfigError, match="backend='fused' is not allowed for cell='lstm'"):
        RecurrentStack("lstm", 3, 4, backend="fused")
    with pytest.raises(ConfigError, match="backend='cudnn' is not allowed"):
        RecurrentStack("gru", 3, 4, backend="cudnn")


def test_a_failed_build_falls_back_to_nn_gru_with_one_warning(monkeypatch):
    from torch.utils import cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    monkeypatch.setattr(fused_gru, "_extension", fused_gru._UNTRIED)
    stack = RecurrentStack("gru", 3, 4, backend="fused")
    x = torch.randn(2, 5, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, _ = stack(x)
        stack(x)
    messages = [str(w.message) for w in caught]
    assert messages == ["fused CPU GRU unavailable (no C++ compiler found); using nn.GRU"]
    torch.testing.assert_close(out, stack.rnn(x)[0])


def test_the_first_use_may_come_inside_inference_mode(monkeypatch):
    monkeypatch.setattr(fused_gru, "_extension", fused_gru._UNTRIED)
    with torch.inference_mode():
        out, _ = RecurrentStack("gru", 3, 4)(torch.randn(2, 5, 3))
    assert fused_gru._extension is not None and out.shape == (2, 5, 4)
