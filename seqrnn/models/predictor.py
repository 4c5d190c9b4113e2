"""Many-to-many next-pixel predictor: a full autoregressive model of binarized images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from seqrnn.errors import ConfigError
from seqrnn.models.base import Comparison, MilestoneSpec, SequenceModel
from seqrnn.nn import MLPHead, State


@dataclass
class Continuation:
    """What :meth:`NextPixelPredictor.continue_sequences` generated.

    Attributes:
        pixels: ``[B, n]`` long in {0, 1}, the generated pixels in order.
        probs: ``[B, n]``, p(x = 1 | everything before) at each generated step.
    """

    pixels: torch.Tensor
    probs: torch.Tensor

    def log_probs(self) -> torch.Tensor:
        """``[B, n]`` log p of each generated pixel under the model (nats)."""
        p = torch.where(self.pixels.bool(), self.probs, 1 - self.probs)
        return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


def repeat_state(state: State, repeats: int) -> State:
    """Copy each sequence's state ``repeats`` times along the batch (``[L, B, H]`` ->
    ``[L, B * repeats, H]``; for an LSTM, both of ``(h, c)``)."""
    if repeats == 1:
        return state
    if isinstance(state, tuple):
        return tuple(s.repeat_interleave(repeats, dim=1) for s in state)
    return state.repeat_interleave(repeats, dim=1)


class NextPixelPredictor(SequenceModel):
    r"""Reads a binarized image pixel by pixel and predicts each pixel from the ones before.

    At step t the input is :math:`x_{t-1}` (:math:`x_0` = ``start_value``) and the output is the
    logit of :math:`p(x_t = 1 \mid x_{<t})`, so the model defines the joint
    :math:`p(x_1, \dots, x_T) = \prod_t p(x_t \mid x_{<t})`. Trained on the mean per-pixel
    binary cross-entropy (nats); also logs ``bits`` per image and ``pixel_acc``, the accuracy of
    the thresholded prediction (p > 0.5) of every pixel.

    Args:
        head_hidden: widths of the per-step head's hidden ReLU layers; empty: one Linear.
        start_value: the input of the first step.
        **kwargs: the stack and optimizer settings of :class:`SequenceModel`.

    Shape: ``x [B, T, 1]`` (or ``[B, T]``) -> logits ``[B, T]``.
    """

    task = "predict"
    milestones = MilestoneSpec("val/loss", "min", (0.12, 0.10, 0.09, 0.085, 0.08))
    jobs = ("evaluate", "complete", "inpaint")
    comparison = Comparison("test_loss", "test BCE (nats/pixel)", False, "val/loss<=0.09")

    def __init__(
        self, head_hidden: list[int] | tuple[int, ...] = (), start_value: float = 0.0, **kwargs
    ) -> None:
        in_features = kwargs.get("in_features", 1)
        if in_features != 1:
            raise ConfigError(
                f"task=predict reads one pixel per step; in_features={in_features} is not "
                "allowed (use data.order=pixel)"
            )
        super().__init__(**kwargs)
        self.head = MLPHead(self.stack.units, list(head_hidden), 1)

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` or ``[B, T, 1]`` of 0/1 -> float ``[B, T]``."""
        return (x.squeeze(-1) if x.dim() == 3 else x).to(self.input_proj.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pixels(x)
        start = x.new_full((x.shape[0], 1), self.hparams.start_value)
        inputs = torch.cat([start, x[:, :-1]], dim=1).unsqueeze(-1)  # x_{t-1} at step t
        out, _ = self.encode(inputs)
        return self.head(out).squeeze(-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` in nats, ``[B]``, for images ``x`` ``[B, T]`` in {0, 1}: one fused pass."""
        x = self._pixels(x)
        bce = F.binary_cross_entropy_with_logits(self(x), x, reduction="none")
        return -bce.sum(dim=1)

    @torch.no_grad()
    def branch_log_probs(
        self, branches: torch.Tensor, first: torch.Tensor, repeats: int
    ) -> torch.Tensor:
        """Per-pixel log-probabilities of image variants that share everything before a point.

        Rows ``i * repeats`` to ``(i + 1) * repeats - 1`` of ``branches`` are variants of one
        image that agree on every pixel before ``first[i]``. The shared part is read once (one
        fused pass over all prefixes, each to its own length); then every variant reads on from
        its own pixel ``first[i]`` with a copy of that state (one fused pass over the suffixes).

        Args:
            branches: ``[B * repeats, T]`` in {0, 1}.
            first: ``[B]`` the first position where the variants of image ``i`` may differ.
            repeats: variants per image.
        Returns:
            ``[B * repeats, T]``: ``log p(x_t | x_<t)`` for ``t >= first`` (nats), 0 before.
        """
        branches = self._pixels(branches.to(self.device))
        first = first.to(self.device).long()
        n, steps = len(first), branches.shape[1]
        shared = branches[::repeats]
        start = shared.new_full((n, 1), self.hparams.start_value)
        # Prefix i: the inputs [x_0 = start, x_1, ..., x_{first_i - 1}]; its last output scores
        # pixel first_i.
        prefix_inputs = torch.cat([start, shared], dim=1).unsqueeze(-1)
        state = self.encode_final_states(prefix_inputs, first + 1)
        top = (state[0] if isinstance(state, tuple) else state)[-1]
        first_logit = self.head(top).squeeze(-1).repeat_interleave(repeats)
        state = repeat_state(state, repeats)
        # Suffix of each variant: inputs x_first .. x_{T-2}, left-aligned; padding after the
        # end is harmless (outputs only depend on earlier inputs) and masked out below.
        first_rows = first.repeat_interleave(repeats)
        width = max(int(steps - 1 - first.min()), 1)
        offsets = torch.arange(width, device=self.device)
        positions = (first_rows[:, None] + offsets).clamp(max=steps - 1)
        out, _ = self.encode(branches.gather(1, positions).unsqueeze(-1), state)
        logits = self.head(out).squeeze(-1)
        targets = branches.gather(1, (positions + 1).clamp(max=steps - 1))
        valid = first_rows[:, None] + 1 + offsets < steps
        suffix = -F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * valid
        result = branches.new_zeros(branches.shape)
        rows = torch.arange(len(branches), device=self.device)
        result[rows, first_rows] = -F.binary_cross_entropy_with_logits(
            first_logit, branches[rows, first_rows], reduction="none"
        )
        target_positions = (positions + 1).clamp(max=steps - 1)
        # Valid suffix positions are distinct and after first: a scatter-add cannot collide
        # with them; invalid ones add 0.
        result.scatter_add_(1, target_positions, suffix)
        return result

    def batch_metrics(self, batch, stage: str) -> tuple[torch.Tensor, dict[str, Any]]:
        """Mean per-pixel BCE (nats), bits per image and thresholded per-pixel accuracy."""
        x = self._pixels(batch[0])
        logits = self(x)
        loss = F.binary_cross_entropy_with_logits(logits, x)
        return loss, {
            "bits": loss.detach() * x.shape[1] / math.log(2),
            "pixel_acc": ((logits > 0).to(x.dtype) == x).float().mean(),
        }

    @torch.no_grad()
    def continue_sequences(
        self,
        prefix: torch.Tensor,
        steps: int,
        greedy: bool = False,
        generator: torch.Generator | None = None,
        repeats: int = 1,
    ) -> Continuation:
        """Continue every prefix by ``steps`` pixels, carrying the recurrent state step by step.

        The prefixes run once through the fused kernel; each new pixel then costs one step.

        Args:
            prefix: ``[B, P]`` in {0, 1} (``P`` may be 0: generate from scratch).
            steps: pixels to generate.
            greedy: take p > 0.5 instead of sampling.
            generator: the random source of sampling (on the model's device), for reproducibility.
            repeats: continue each prefix this many times (rows ``i * repeats`` to
                ``(i + 1) * repeats - 1`` continue prefix ``i``); its state is computed once
                and copied, which is what samples of one image or candidates of one in-painting
                share.
        Returns:
            A :class:`Continuation` of ``[B * repeats, steps]`` pixels and their probabilities.
        """
        prefix = self._pixels(prefix.to(self.device))
        start = prefix.new_full((prefix.shape[0], 1), self.hparams.start_value)
        out, state = self.encode(torch.cat([start, prefix], dim=1).unsqueeze(-1))
        logit = self.head(out[:, -1]).squeeze(-1).repeat_interleave(repeats, dim=0)
        state = repeat_state(state, repeats)
        pixels, probs = [], []
        for t in range(steps):
            p = torch.sigmoid(logit)
            pixel = (p > 0.5).to(p.dtype) if greedy else torch.bernoulli(p, generator=generator)
            pixels.append(pixel)
            probs.append(p)
            if t + 1 < steps:
                logit, state = self._next_logit(pixel, state)
        empty = logit.new_zeros(logit.shape[0], 0)
        return Continuation(
            pixels=torch.stack(pixels, 1).long() if pixels else empty.long(),
            probs=torch.stack(probs, 1) if probs else empty,
        )

    def _next_logit(self, pixel: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Feed ``pixel [B]`` as the next input; the logit of the pixel after it ``[B]``."""
        out, state = self.encode_step(pixel.unsqueeze(-1), state)
        return self.head(out).squeeze(-1), state
