"""Bayesian sequences: symbols from a categorical whose parameters a Dirichlet redraws.

A sequence is a run of segments. For each segment, p ~ Dirichlet(alpha) is drawn, then
``period`` symbols x ~ Categorical(p) (values 0..K-1), then the reset symbol K. A next-symbol
predictor that has learned the data is, at best, the Bayesian posterior predictive: after n
symbols of the segment with counts c_k,

    p(next = k) = (c_k + alpha_k) / (n + sum(alpha))   for n < period,
    p(next = reset) = 1                                 for n = period.

Sequences are kept as ``[N, L, 1]`` uint8 symbols, L = segments * (period + 1), and served by
:class:`~seqrnn.data.SequenceBatches` like the images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqrnn.data.base import EVAL_SPLITS, SequenceDataModule
from seqrnn.errors import ConfigError, require_int

# Each split draws from its own generator: seed * SPLIT_SEED_STRIDE + the split's index.
SPLIT_SEED_STRIDE = 10


def check_alpha(alpha: Sequence[float]) -> torch.Tensor:
    alpha = torch.as_tensor(list(alpha), dtype=torch.float64)
    if alpha.dim() != 1 or len(alpha) < 2 or not (alpha > 0).all():
        raise ConfigError(
            f"data.alpha={alpha.tolist()} is not allowed; it needs 2 or more positive numbers"
        )
    return alpha


def describe(alpha: Sequence[float], period: int, fixed_p: Sequence[float] | None = None) -> str:
    """What reports call these data, e.g. ``T=5, alpha=(10,1,1)``."""
    text = f"T={period}, alpha=(" + ",".join(f"{a:g}" for a in alpha) + ")"
    return text if fixed_p is None else text + ", test p fixed"


def generate(
    count: int,
    alpha: Sequence[float],
    period: int,
    segments: int,
    seed: int = 0,
    fixed_p: Sequence[float] | None = None,
) -> torch.Tensor:
    """``count`` sequences ``[count, segments * (period + 1)]`` (int64): each segment draws
    p ~ Dirichlet(alpha) (or uses ``fixed_p``), then ``period`` symbols, then the reset K."""
    alpha = check_alpha(alpha)
    require_int("data.period", period, 1)
    require_int("data.segments", segments, 1)
    generator = torch.Generator().manual_seed(seed)
    k = len(alpha)
    if fixed_p is not None:
        p = torch.as_tensor(list(fixed_p), dtype=torch.float64)
        if p.shape != alpha.shape or (p < 0).any() or abs(float(p.sum()) - 1) > 1e-6:
            raise ConfigError(f"fixed_p={p.tolist()} must be {k} probabilities summing to 1")
        p = p.expand(count, segments, k)
    else:
        # torch's Dirichlet sampler takes no generator: seed the global one inside a fork, so
        # the data set is the seed's and the caller's random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            p = torch.distributions.Dirichlet(alpha).sample((count, segments))
    draws = torch.multinomial(
        p.reshape(-1, k).float(), period, replacement=True, generator=generator
    ).reshape(count, segments, period)
    resets = torch.full((count, segments, 1), k, dtype=torch.long)
    return torch.cat([draws, resets], dim=2).reshape(count, -1)


def bayes_predictive(symbols: torch.Tensor, alpha: Sequence[float], period: int) -> torch.Tensor:
    """The posterior predictive of every position: ``[B, L]`` symbols -> ``[B, L, K + 1]``,
    row t being p(x_t | x_<t) under the generating process (see the module docstring). Computed
    in float64 on the device of ``symbols``."""
    device = symbols.device
    alpha = check_alpha(alpha).to(device)
    k = len(alpha)
    batch, length = symbols.shape
    onehot = torch.nn.functional.one_hot(symbols.long(), k + 1)[..., :k].double()
    # counts of each symbol before position t, within t's segment
    position = torch.arange(length, device=device)
    seen = position % (period + 1)  # symbols of the segment before t
    cumulative = torch.cumsum(onehot, dim=1) - onehot  # counts before t over the sequence
    segment_start = position - seen
    start_counts = cumulative[:, segment_start]  # counts before the segment began
    counts = cumulative - start_counts
    probs = torch.zeros(batch, length, k + 1, dtype=torch.float64, device=device)
    probs[..., :k] = (counts + alpha) / (seen[:, None].double() + alpha.sum())
    at_reset = seen == period
    probs[:, at_reset] = 0.0
    probs[:, at_reset, k] = 1.0
    return probs


def bayes_metrics(
    bayes: torch.Tensor, log_q: torch.Tensor, symbols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """How a predictor ``log_q`` compares with the Bayes predictive ``bayes`` (both
    ``[B, L, K + 1]``, log-probabilities and probabilities) on ``symbols`` ``[B, L]``.

    Returns:
        kl: ``[B, L]``, KL(bayes || q) = sum_k p_k (log p_k - log q_k) at every position (terms
            with p_k = 0 vanish); bayes_ce: ``[B, L]``, the Bayes predictive's cross-entropy of
            the symbol that came, -log p(x_t). Nats; the caller takes means or sums.
    """
    tiny = torch.finfo(bayes.dtype).tiny  # log(0) never reached: 0 * log(tiny) is 0
    kl = (bayes * (torch.log(bayes.clamp_min(tiny)) - log_q)).sum(-1)
    bayes_ce = -torch.log(bayes.gather(-1, symbols.unsqueeze(-1)).clamp_min(tiny)).squeeze(-1)
    return kl, bayes_ce


class DirichletSequenceDataModule(SequenceDataModule):
    """Sequences of the Dirichlet-categorical process, as a LightningDataModule.

    Args:
        alpha: Dirichlet concentration, one per symbol (K = len(alpha); symbol K is the reset).
        period: symbols per segment (T).
        segments: segments per sequence.
        train_size, val_size, test_size: sequences per split (disjoint seeds).
        fixed_p: when given, the test split uses these symbol probabilities in every segment
            instead of Dirichlet draws.
        batch_size, eval_batch_size, seed: as for MNIST.
    """

    order = "symbols"
    family = "dirichlet"

    def __init__(
        self,
        alpha: Sequence[float] = (10.0, 1.0, 1.0),
        period: int = 5,
        segments: int = 20,
        train_size: int = 20000,
        val_size: int = 2000,
        test_size: int = 2000,
        fixed_p: Sequence[float] | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.alpha = check_alpha(alpha).tolist()
        self.period = require_int("data.period", period, 1)
        self.segments = require_int("data.segments", segments, 1)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        for split, size in self.sizes.items():
            require_int(f"data.{split}_size", size, 1)
        self.fixed_p = None if fixed_p is None else list(fixed_p)
        self.batch_size = require_int("data.batch_size", batch_size, 1)
        self.eval_batch_size = require_int("data.eval_batch_size", eval_batch_size, 1)
        self.seed = seed

    @property
    def symbols(self) -> int:
        """Symbols the model predicts: K categories and the reset."""
        return len(self.alpha) + 1

    @property
    def features(self) -> int:
        return self.symbols

    @property
    def description(self) -> str:
        return describe(self.alpha, self.period, self.fixed_p)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for offset, split in enumerate(EVAL_SPLITS):
            fixed = self.fixed_p if split == "test" else None
            symbols = generate(
                self.sizes[split],
                self.alpha,
                self.period,
                self.segments,
                seed=self.seed * SPLIT_SEED_STRIDE + offset,
                fixed_p=fixed,
            )
            self.splits[split] = (
                symbols.to(torch.uint8).unsqueeze(-1),
                torch.zeros(len(symbols), dtype=torch.long),
            )
