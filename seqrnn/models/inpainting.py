"""Exact in-painting with a next-pixel predictor: the posterior of hidden pixels given every
other pixel, past and future.

The predictor is a full joint p(x_1..x_784), so the posterior of hidden pixels M given all the
others is exact: for each candidate filling v of M,
p(x_M = v | rest) = p(x with x_M = v) / sum over v' of p(x with x_M = v'), a softmax over the
2^|M| candidates' log-probabilities. Pixels before the first hidden one are the same in every
candidate, so they are read once and the recurrent state is copied to the candidates
(:meth:`~seqrnn.models.NextPixelPredictor.branch_log_probs`). The study of it (sets, metrics,
figures) is :mod:`seqrnn.studies.inpainting`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqrnn.errors import ConfigError
from seqrnn.layout import MAX_HIDDEN_PIXELS
from seqrnn.models.predictor import NextPixelPredictor


def candidates(k: int) -> torch.Tensor:
    """All ``2^k`` fillings of ``k`` hidden pixels, ``[2^k, k]``, in binary counting order
    (row i holds the bits of i, the first pixel the most significant).

    Raises:
        ConfigError: ``k`` above :data:`~seqrnn.layout.MAX_HIDDEN_PIXELS`, before any memory
            is taken for it.
    """
    if k > MAX_HIDDEN_PIXELS:
        raise ConfigError(
            f"{k} hidden pixels are too many for exact in-painting: 2^{k} = {2**k:,} fillings; "
            f"at most {MAX_HIDDEN_PIXELS} per image"
        )
    shifts = torch.arange(k - 1, -1, -1)
    return (torch.arange(2**k)[:, None] >> shifts) & 1


@dataclass
class Posterior:
    """The exact posterior of the hidden pixels of one image.

    Attributes:
        positions: ``[k]`` the hidden pixels, in reading order.
        fillings: ``[2^k, k]`` the candidate values of those pixels.
        log_joint: ``[2^k]`` log p(image with that filling), up to a constant shared by all
            candidates (the pixels before the first hidden one), in nats (float64).
        past_log_probs: ``[2^k, k]`` log p(x_m = filling | pixels before m) at each hidden m:
            what the past alone says.
    """

    positions: torch.Tensor
    fillings: torch.Tensor
    log_joint: torch.Tensor
    past_log_probs: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        """``[2^k]`` posterior probability of each filling."""
        return torch.softmax(self.log_joint, dim=0)

    @property
    def map_filling(self) -> torch.Tensor:
        """``[k]`` the most probable filling."""
        return self.fillings[self.log_joint.argmax()]

    @property
    def marginals(self) -> torch.Tensor:
        """``[k]`` p(x_m = 1 | rest) for each hidden pixel."""
        probs = self.probs
        return probs @ self.fillings.to(probs.dtype)

    def index_of(self, filling: torch.Tensor) -> int:
        """Row of ``filling`` ``[k]`` in :attr:`fillings` (binary counting order)."""
        return int((filling.long() * (2 ** torch.arange(len(filling) - 1, -1, -1))).sum())

    def past_only_filling(self) -> torch.Tensor:
        """``[k]`` pixel by pixel in reading order, the more probable value given only the
        pixels before it (earlier hidden ones filled this way): prediction without the future."""
        chosen = torch.zeros(len(self.positions), dtype=torch.long)
        for j in range(len(chosen)):
            with_one = chosen.clone()
            with_one[j] = 1
            # log p(x_m = 1 | past) is in any candidate that agrees on pixels 0..j
            chosen[j] = int(self.past_log_probs[self.index_of(with_one), j].exp() > 0.5)
        return chosen


@torch.no_grad()
def posteriors(
    model: NextPixelPredictor, images: torch.Tensor, max_sequences: int = 512
) -> list[Posterior]:
    """The exact posterior of every image's hidden pixels (``images`` ``[N, 784]``, -1 hidden).

    Images with the same number k of hidden pixels are batched, as many as fit
    ``max_sequences`` candidate sequences at a time, in order of their first hidden pixel: the
    candidates of a batch then read suffixes of about one length, and little is padding.
    """
    images = images.long()
    hidden = images < 0
    counts = hidden.sum(dim=1)
    results: list[Posterior | None] = [None] * len(images)
    for k in counts.unique().tolist():
        fillings = candidates(k)
        group = (counts == k).nonzero().flatten()
        first_hidden = hidden[group].float().argmax(dim=1)
        group = group[first_hidden.argsort(stable=True)]
        per_chunk = max(1, max_sequences // len(fillings))
        for chunk in group.split(per_chunk):
            positions = hidden[chunk].nonzero()[:, 1].reshape(len(chunk), k)
            branches = images[chunk].repeat_interleave(len(fillings), dim=0).clamp(min=0)
            rows = torch.arange(len(branches))[:, None]
            branches[rows, positions.repeat_interleave(len(fillings), 0)] = fillings.repeat(
                len(chunk), 1
            )
            log_probs = model.branch_log_probs(branches, positions[:, 0], len(fillings)).cpu()
            log_probs = log_probs.reshape(len(chunk), len(fillings), -1)
            for i, image in enumerate(chunk.tolist()):
                results[image] = Posterior(
                    positions=positions[i],
                    fillings=fillings,
                    # float64: the sum runs over hundreds of pixels, the softmax needs its
                    # differences.
                    log_joint=log_probs[i].double().sum(dim=1),
                    past_log_probs=log_probs[i][:, positions[i]],
                )
    return results  # type: ignore[return-value]


@torch.no_grad()
def brute_force_log_joint(
    model: NextPixelPredictor, image: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every filling of one image scored by a full pass over the whole image, as ``log_prob``
    does, but summed in float64: ``(fillings [2^k, k], log p [2^k])``."""
    positions = (image < 0).nonzero().flatten()
    fillings = candidates(len(positions))
    filled = image.long().clamp(min=0).repeat(len(fillings), 1).to(model.device)
    filled[:, positions] = fillings.to(model.device)
    per_pixel = -F.binary_cross_entropy_with_logits(model(filled), filled.float(), reduction="none")
    return fillings, per_pixel.double().sum(dim=1).cpu()
