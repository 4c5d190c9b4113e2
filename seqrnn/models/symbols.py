"""Next-symbol predictor for the Bayesian sequences (``task=dirichlet``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from seqrnn.data.dirichlet import bayes_metrics, bayes_predictive, check_alpha
from seqrnn.models.base import SequenceModel


class SymbolPredictor(SequenceModel):
    """Reads a symbol sequence and predicts each symbol from the ones before it.

    The input at step t is the one-hot symbol t-1 (the reset symbol at t = 0: a sequence starts
    as after a reset); the output is the logits over the K + 1 symbols. Trained on the mean
    cross-entropy per symbol (nats). Because the data's generating process is known, it also logs
    ``kl``, the mean KL divergence from the Bayesian posterior predictive to the network's
    predictive, and ``bayes_loss``, the Bayesian predictor's own cross-entropy: the best a
    predictor can do (``loss - bayes_loss`` is what the network leaves on the table).

    Args:
        alpha, period: the process (see :mod:`seqrnn.data.dirichlet`).
        **kwargs: the stack and optimizer settings of :class:`SequenceModel`; ``in_features``
            is K + 1.

    Shape: ``x [B, L, 1]`` symbols (any dtype) -> logits ``[B, L, K + 1]``.
    """

    task = "dirichlet"
    data_family = "dirichlet"
    jobs = ("analyze",)

    def __init__(self, alpha: Sequence[float] = (10.0, 1.0, 1.0), period: int = 5, **kwargs):
        symbols = len(check_alpha(alpha)) + 1
        kwargs["in_features"] = symbols
        super().__init__(**kwargs)
        self.symbols = symbols
        self.head = torch.nn.Linear(self.stack.units, symbols)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        symbols = self._symbols(x)
        reset = torch.full_like(symbols[:, :1], self.symbols - 1)
        previous = torch.cat([reset, symbols[:, :-1]], dim=1)
        inputs = F.one_hot(previous, self.symbols).to(self.input_proj.weight.dtype)
        out, _ = self.encode(inputs)
        return self.head(out)

    @staticmethod
    def _symbols(x: torch.Tensor) -> torch.Tensor:
        return (x.squeeze(-1) if x.dim() == 3 else x).long()

    def batch_metrics(self, batch, stage: str) -> tuple[torch.Tensor, dict[str, Any]]:
        symbols = self._symbols(batch[0])
        logits = self(batch[0])
        loss = F.cross_entropy(logits.flatten(0, 1), symbols.flatten())
        bayes = bayes_predictive(symbols, self.hparams.alpha, self.hparams.period)
        bayes = bayes.to(logits.dtype)
        kl, bayes_ce = bayes_metrics(bayes, F.log_softmax(logits, dim=-1), symbols)
        return loss, {"kl": kl.mean().detach(), "bayes_loss": bayes_ce.mean()}
