"""A fast CPU path for GRU stacks: forward and backward through time in C++.

The kernel is ``csrc/fused_gru.cpp``.

On a CPU, PyTorch runs ``nn.LSTM`` through a fused oneDNN kernel but ``nn.GRU`` as a chain of
small ATen ops per time step, differentiated by autograd op by op, which makes the GRU the slow
cell. This module compiles (on first use, cached by ``torch.utils.cpp_extension``) a layer with
its own backward, in the shape cuDNN uses: the input projection of every step in one GEMM, one
small GEMM per step, the weight gradients in one GEMM each after the loop. It reads the
parameters of the ``nn.GRU`` it stands in for, so ``state_dict`` and checkpoints are unchanged.

If the compiler or the build is unavailable, or the built kernel fails its check against
``nn.GRU``, :func:`extension` says so in one warning line and returns None; callers then use
``nn.GRU``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_name("csrc") / "fused_gru.cpp"
# Vector instructions by the CPU capability torch detected (the name of the build carries it,
# so a cache shared by different machines never hands one a build it cannot run).
_ARCH_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
_UNTRIED = object()
_extension: object = _UNTRIED


def extension() -> ModuleType | None:
    """The compiled kernel, built on first call (about a minute) and cached; None if
    unavailable (with one warning saying why)."""
    global _extension
    if _extension is _UNTRIED:
        _extension = _build()
    return _extension  # type: ignore[return-value]


def _build() -> ModuleType | None:
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    arch = _ARCH_FLAGS.get(capability, [])
    try:
        module = cpp_extension.load(
            name=f"seqrnn_fused_gru_{capability.lower()}",
            sources=[str(SOURCE)],
            # -ffast-math + -fopenmp-simd let the gate loops call glibc's vector exp and tanh.
            extra_cflags=["-O3", "-ffast-math", "-fopenmp-simd", *arch],
            verbose=os.environ.get("SEQRNN_VERBOSE_BUILD") == "1",
        )
    except Exception as err:  # noqa: BLE001 - any build failure means: use nn.GRU
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"fused CPU GRU unavailable ({reason[:200]}); using nn.GRU", stacklevel=3)
        return None
    if not _agrees_with_torch(module):
        warnings.warn(
            "fused CPU GRU disagrees with nn.GRU on a self-check; using nn.GRU", stacklevel=3
        )
        return None
    return module


def _agrees_with_torch(module: ModuleType) -> bool:
    """Forward and gradients of a small random case against nn.GRU (a guard against a
    miscompiled build; the tests check much more). The first use may come inside an evaluation
    (no_grad or inference mode): the check needs gradients all the same."""
    with torch.inference_mode(False), torch.enable_grad():
        return _compare_with_torch(module)


def _compare_with_torch(module: ModuleType) -> bool:
    generator = torch.Generator().manual_seed(0)
    reference = nn.GRU(5, 7, batch_first=True)
    x = torch.randn(3, 11, 5, generator=generator, requires_grad=True)
    weights = [
        reference.weight_ih_l0,
        reference.weight_hh_l0,
        reference.bias_ih_l0,
        reference.bias_hh_l0,
    ]
    out, h = reference(x)
    (out.sum() + h.sum()).backward()
    expected = [out.detach(), x.grad.clone(), *(w.grad.clone() for w in weights)]
    x.grad = None
    for w in weights:
        w.grad = None
    fused_out, fused_h = FusedGRULayer.apply(x.transpose(0, 1), torch.zeros(3, 7), *weights, module)
    (fused_out.sum() + fused_h.sum()).backward()
    got = [fused_out.transpose(0, 1).detach(), x.grad, *(w.grad for w in weights)]
    return all(
        torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got, expected, strict=True)
    )


class FusedGRULayer(torch.autograd.Function):
    """One GRU layer over a whole time-major sequence: ``x [T, B, I]``, ``h0 [B, H]`` ->
    ``out [T, B, H]``, ``h_T [B, H]``."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, module):
        x = x.contiguous()
        out = module.forward(x, h0, w_ih, w_hh, b_ih, b_hh)
        ctx.module = module
        # Only the outputs are kept: the backward recomputes the gates from them.
        ctx.save_for_backward(x, h0, out, w_ih, w_hh, b_ih, b_hh)
        return out, out[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h):
        x, h0, out, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        grad_out = torch.zeros_like(out) if grad_out is None else grad_out
        grad_h = torch.zeros_like(h0) if grad_h is None else grad_h
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = ctx.module.backward(
            grad_out, grad_h, x, h0, out, w_ih, w_hh, b_ih, b_hh
        )
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None


def run_fused_gru(
    rnn: nn.GRU,
    x: torch.Tensor,
    h0: torch.Tensor | None,
    module: ModuleType,
    input_proj: nn.Linear | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rnn(input_proj(x), h0)`` (``batch_first``) computed by the fused kernel, layer by layer,
    with ``rnn``'s own parameters and its dropout between layers (in training).

    ``input_proj`` (an affine ``A x + a``) is folded into the first layer:
    ``W_ih (A x + a) + b_ih = (W_ih A) x + (W_ih a + b_ih)``; autograd carries the gradients
    back to ``W_ih``, ``A`` and ``a`` through those two small products.
    """
    layers, units = rnn.num_layers, rnn.hidden_size
    if h0 is None:
        h0 = x.new_zeros(layers, x.shape[0], units)
    inputs = x.transpose(0, 1)
    finals = []
    for layer in range(layers):
        weights = [
            getattr(rnn, f"{kind}_l{layer}")
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        if layer == 0 and input_proj is not None:
            w_ih, b_ih = weights[0], weights[2]
            weights[0] = w_ih @ input_proj.weight
            weights[2] = b_ih if input_proj.bias is None else w_ih @ input_proj.bias + b_ih
        out, h_last = FusedGRULayer.apply(inputs, h0[layer].contiguous(), *weights, module)
        finals.append(h_last)
        if layer + 1 < layers and rnn.dropout > 0 and rnn.training:
            out = nn.functional.dropout(out, rnn.dropout, training=True)
        inputs = out
    return inputs.transpose(0, 1), torch.stack(finals)
