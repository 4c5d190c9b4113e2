"""A fast CPU path for GRU and LSTM stacks: forward and backward through time in C++.

The kernels are ``csrc/fused_rnn.cpp``.

On a CPU, PyTorch runs ``nn.GRU`` as a chain of small ATen ops per time step, differentiated
by autograd op by op, and ``nn.LSTM`` through oneDNN, which keeps every gate of every step for
its backward. This module compiles (on first use, cached by ``torch.utils.cpp_extension``;
about 30 s) a layer of each cell with its own backward, in the shape cuDNN uses: the input
projection of a chunk of steps in one GEMM, one small GEMM per step, the weight gradients in one
GEMM per chunk; the forward keeps only the outputs (and an LSTM's cell states) and the backward
recomputes the gates from them, except in an LSTM of 128 units or more, whose forward keeps its
gates (:func:`keeps_gates`). It reads the parameters of the ``nn.GRU`` / ``nn.LSTM`` it
stands in for, so ``state_dict`` and checkpoints are unchanged.

Without gradients (evaluation, ``log_prob``, in-painting) the forward alone runs, and nothing
is kept for a backward.

Under CPU autocast to bfloat16 (Lightning's ``trainer.precision=bf16-mixed``) the kernels run
the GEMMs of layers of 64 units or more in bfloat16 (float32 accumulation inside each GEMM) and
everything else in float32: states, gates, the LSTM cell, the sums of the weight gradients;
parameters, outputs and gradients stay float32 (:func:`bf16_gemms`). Narrower layers, odd
widths, CPUs without bfloat16 arithmetic and float16 autocast compute in float32.

If the compiler or the build is unavailable, or the built kernels fail their check against
``nn.GRU`` and ``nn.LSTM``, :func:`extension` says so in one warning line and returns None;
callers then use the torch modules.
"""

from __future__ import annotations

import fcntl
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_name("csrc") / "fused_rnn.cpp"
# Vector instructions by the CPU capability torch detected (the name of the build carries it,
# so a cache shared by different machines never hands one a build it cannot run).
_ARCH_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
_UNTRIED = object()
_extension: object = _UNTRIED

# GRU state: h [layers, B, units]; LSTM state: (h, c), each [layers, B, units].
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def extension() -> ModuleType | None:
    """The compiled kernels, built on first call and cached; None if unavailable (with one
    warning saying why)."""
    global _extension
    if _extension is _UNTRIED:
        _extension = _build()
        if _extension is not None:
            keep_freed_memory()
    return _extension  # type: ignore[return-value]


# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses more on 64-bit machines
_TOP_PAD = 256 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for the next allocation instead of giving it back to the
    system. The fused kernels allocate their outputs and work buffers (tens of MB at 128 units)
    at every call; with glibc's defaults each comes fresh from the system and is zeroed page by
    page on first touch, about 13,000 page faults a GRU-128 step and 76,000 an LSTM-128 step at
    batch 128. Kept, a GRU step faults ~1,700 times and the bfloat16 steps run ~10% faster
    (docs/kernels.md). Process-wide: the process's memory stays at its high-water mark, as a
    training process's does anyway. Returns whether it applied (glibc on Linux only)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux") or os.environ.get("SEQRNN_KEEP_FREED_MEMORY") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
            (_M_TRIM_THRESHOLD, 2**31 - 1),
            (_M_TOP_PAD, _TOP_PAD),
        )
    )


def _build() -> ModuleType | None:
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    arch = _ARCH_FLAGS.get(capability, [])
    name = f"seqrnn_fused_rnn_{capability.lower()}"
    try:
        with _build_lock(name) as build_directory:
            module = cpp_extension.load(
                name=name,
                sources=[str(SOURCE)],
                # -ffast-math + -fopenmp-simd let the gate loops call glibc's vector exp, tanh.
                extra_cflags=["-O3", "-ffast-math", "-fopenmp-simd", *arch],
                build_directory=str(build_directory),
                verbose=os.environ.get("SEQRNN_VERBOSE_BUILD") == "1",
            )
    except Exception as err:  # noqa: BLE001 - any build failure means: use the torch modules
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(
            f"fused CPU RNN unavailable ({reason[:200]}); using nn.GRU / nn.LSTM", stacklevel=3
        )
        return None
    if not _agrees_with_torch(module):
        warnings.warn(
            "fused CPU RNN disagrees with nn.GRU / nn.LSTM on a self-check; training and "
            "evaluation use nn.GRU / nn.LSTM instead, slower on a CPU (a miscompiled build: "
            "SEQRNN_VERBOSE_BUILD=1 shows the compiler's output)",
            stacklevel=3,
        )
        return None
    return module


@contextmanager
def _build_lock(name: str) -> Iterator[Path]:
    """The build's folder, held by this process alone: ``<root>/py<X.Y>-torch<version>/<name>``
    under torch's extensions root (``$TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions``),
    one per Python and torch, whose binary interfaces the build is tied to.

    torch's own build lock is a file that only the process that made it removes: a build killed
    midway (a SLURM time limit, ``scancel``, SIGTERM before training starts) leaves it behind,
    and every later run waits for it at its first forward pass, silently and forever. This lock
    is an ``flock``, which the system drops when its process dies; whoever holds it is the only
    one building, so a torch lock found then is a dead build's, and goes."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    folder = Path(root) / f"{python}-torch{torch.__version__}" / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "seqrnn.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released on close, or by the system at death
        (folder / "lock").unlink(missing_ok=True)  # torch's, left by a killed build
        yield folder


def _agrees_with_torch(module: ModuleType) -> bool:
    """Forward and gradients of a small random case of each cell against the torch modules (a
    guard against a miscompiled build; the tests check much more). The first use may come inside
    an evaluation (no_grad or inference mode), or under autocast: the check needs gradients
    and float32 all the same."""
    # fork_rng: the check draws random weights without moving the caller's random stream.
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.random.fork_rng(),
        torch.autocast("cpu", enabled=False),
    ):
        return all(_compare_with_torch(module, rnn_class) for rnn_class in (nn.GRU, nn.LSTM))


def _compare_with_torch(module: ModuleType, rnn_class: type[nn.RNNBase]) -> bool:
    torch.manual_seed(0)
    reference = rnn_class(5, 7, num_layers=2, batch_first=True)
    x = torch.randn(3, 11, 5, requires_grad=True)
    results = []
    for kernel in (None, module):
        x.grad = None
        reference.zero_grad()
        out, state = reference(x) if kernel is None else run_fused(reference, x, None, kernel)
        finals = state if isinstance(state, tuple) else (state,)
        (out.sum() + sum(s.sum() for s in finals)).backward()
        results.append(
            [out.detach(), x.grad.clone(), *(p.grad.clone() for p in reference.parameters())]
        )
    return all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(*results, strict=True))


# From this width on, an LSTM layer's forward keeps its activated gates ([T, B, 4H]: 205 MB for
# 784 steps of batch 128 at 128 units) and the backward reads them instead of recomputing them
# with one more GEMM per chunk and four exp/tanh per unit. Measured in interleaved rounds at
# batch 128, 256 and 1024, keeping was 5-15% faster for LSTM-128 and 10% slower for LSTM-64
# (and 9-26% slower for a GRU at 64 and 128: its kernel always recomputes).
KEEP_LSTM_GATES_FROM_UNITS = 128
_kept_by_choice: bool | None = None  # set by gates_kept


def keeps_gates(units: int) -> bool:
    """Whether a fused LSTM layer of ``units`` keeps its gates for the backward."""
    return units >= KEEP_LSTM_GATES_FROM_UNITS if _kept_by_choice is None else _kept_by_choice


@contextmanager
def gates_kept(keep: bool | None) -> Iterator[None]:
    """Within: every fused LSTM layer keeps its gates for the backward (True), none does
    (False), or the width decides (None); for benchmarks and tests of both paths."""
    global _kept_by_choice
    before, _kept_by_choice = _kept_by_choice, keep
    try:
        yield
    finally:
        _kept_by_choice = before


# From this width on, a layer's GEMMs run in bfloat16 under bfloat16 autocast. Below it the step's
# GEMM is too small to gain (forward + backward at batch 128, one thread, bfloat16 over float32:
# 0.86x at 32 units, 1.0-1.05x at 48, 1.2x at 64, 1.4-1.5x at 128; make bench ARGS=stack_backends).
BF16_FROM_UNITS = 64


def bf16_gemms(x: torch.Tensor, units: int) -> bool:
    """Whether the fused kernels run the GEMMs of a layer of ``units`` in bfloat16 for ``x``:
    on the CPU, under autocast to bfloat16 (``trainer.precision=bf16-mixed``), from
    :data:`BF16_FROM_UNITS` units on, an even number of them (the step products read the
    recurrent weights in pairs of rows), where PyTorch has the bfloat16 micro-kernel they run on
    (:func:`bf16_step_products`)."""
    return (
        x.device.type == "cpu"
        and units >= BF16_FROM_UNITS
        and units % 2 == 0
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and bf16_step_products()
    )


_step_products: bool | None = None


def bf16_step_products() -> bool:
    """Whether the kernels' bfloat16 step products (oneDNN's brgemm micro-kernel, in x86
    builds of PyTorch on CPUs with AVX-512 bfloat16 or AMX) run here; checked once."""
    global _step_products
    if _step_products is None:
        module = extension()
        _step_products = module is not None and module.bf16_step_products()
    return _step_products


def _output_grad(grad_out: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    """The gradient reaching a layer's outputs ``[T, B, H]``, or an empty tensor when none does
    (a classifier reads only the final state): the kernels then read one row of zeros, where
    autograd would have filled a whole ``[T, B, H]`` tensor with them."""
    return out.new_empty(0) if grad_out is None else grad_out


class FusedGRULayer(torch.autograd.Function):
    """One GRU layer over a whole time-major sequence: ``x [T, B, I]``, ``h0 [B, H]`` ->
    ``out [T, B, H]``, ``h_T [B, H]``."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, module, bf16):
        x = x.contiguous()
        out = module.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, bf16)
        ctx.module, ctx.bf16 = module, bf16
        # Only the outputs are kept: the backward recomputes the gates from them.
        ctx.save_for_backward(x, h0, out, w_ih, w_hh, b_ih, b_hh)
        ctx.set_materialize_grads(False)  # see _output_grad
        return out, out[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h):
        x, h0, out, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        grad_h = torch.zeros_like(h0) if grad_h is None else grad_h
        grads = ctx.module.gru_backward(
            _output_grad(grad_out, out), grad_h, x, h0, out, w_ih, w_hh, b_ih, b_hh, ctx.bf16
        )
        return *grads, None, None


class FusedLSTMLayer(torch.autograd.Function):
    """One LSTM layer over a whole time-major sequence: ``x [T, B, I]``, ``h0, c0 [B, H]`` ->
    ``out [T, B, H]``, ``h_T, c_T [B, H]``."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, module, bf16):
        x = x.contiguous()
        keep = keeps_gates(h0.shape[-1])
        out, cells, gates = module.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep, bf16)
        ctx.module, ctx.bf16 = module, bf16
        # The outputs and cell states are kept, and the gates when keeps_gates says so; else
        # the backward recomputes them.
        ctx.save_for_backward(x, h0, c0, out, cells, gates, w_ih, w_hh, b_ih, b_hh)
        ctx.set_materialize_grads(False)  # see _output_grad
        return out, out[-1].clone(), cells[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h, grad_c):
        x, h0, c0, out, cells, gates, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        grad_h = torch.zeros_like(h0) if grad_h is None else grad_h
        grad_c = torch.zeros_like(c0) if grad_c is None else grad_c
        grads = ctx.module.lstm_backward(
            _output_grad(grad_out, out),
            grad_h,
            grad_c,
            x,
            h0,
            c0,
            out,
            cells,
            gates,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            ctx.bf16,
        )
        return *grads, None, None


def _run_layer(module, x, state, weights, lstm: bool, bf16: bool):
    """One layer, through autograd when anything needs a gradient, else the forward alone."""
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *state, *weights))
    if lstm:
        if needs_grad:
            return FusedLSTMLayer.apply(x, *state, *weights, module, bf16)
        out, cells, _ = module.lstm_forward(x.contiguous(), *state, *weights, False, bf16)
        return out, out[-1], cells[-1]
    if needs_grad:
        return FusedGRULayer.apply(x, *state, *weights, module, bf16)
    out = module.gru_forward(x.contiguous(), *state, *weights, bf16)
    return out, out[-1]


def run_fused(
    rnn: nn.GRU | nn.LSTM,
    x: torch.Tensor,
    state: State | None,
    module: ModuleType,
    input_proj: nn.Linear | None = None,
) -> tuple[torch.Tensor, State]:
    """``rnn(input_proj(x), state)`` (``batch_first``) computed by the fused kernels, layer by
    layer, with ``rnn``'s own parameters and its dropout between layers (in training).

    ``input_proj`` (an affine ``A x + a``) is folded into the first layer:
    ``W_ih (A x + a) + b_ih = (W_ih A) x + (W_ih a + b_ih)``; autograd carries the gradients
    back to ``W_ih``, ``A`` and ``a`` through those two small products.

    Under CPU autocast to bfloat16 the kernels run their GEMMs in bfloat16 (:func:`bf16_gemms`);
    autocast itself is off inside, so the folded weights, the kernels' other ATen calls and the
    outputs stay float32 (autocast would round them all to bfloat16, or to float16).

    Shapes: ``x [B, T, F]``; state and the returned state as ``rnn``'s (GRU ``h``, LSTM
    ``(h, c)``, each ``[L, B, H]``); returns ``out [B, T, H]`` and the final state.
    """
    bf16 = bf16_gemms(x, rnn.hidden_size)
    autocast = torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", enabled=False):
        if autocast:  # what an autocast region before may have left in a lower precision
            x = x.float()
            if state is not None:
                state = (
                    tuple(s.float() for s in state) if isinstance(state, tuple) else state.float()
                )
        return _run_stack(rnn, x, state, module, input_proj, bf16)


def _run_stack(rnn, x, state, module, input_proj, bf16):
    """:func:`run_fused`'s layers, with autocast off."""
    lstm = isinstance(rnn, nn.LSTM)
    layers, units = rnn.num_layers, rnn.hidden_size
    if state is None:
        zeros = x.new_zeros(layers, x.shape[0], units)
        state = (zeros, zeros) if lstm else zeros
    per_layer = state if lstm else (state,)
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
        start = [s[layer].contiguous() for s in per_layer]
        out, *final = _run_layer(module, inputs, start, weights, lstm, bf16)
        finals.append(final)
        if layer + 1 < layers and rnn.dropout > 0 and rnn.training:
            out = nn.functional.dropout(out, rnn.dropout, training=True)
        inputs = out
    stacked = [torch.stack(parts) for parts in zip(*finals, strict=True)]
    return inputs.transpose(0, 1), (tuple(stacked) if lstm else stacked[0])
