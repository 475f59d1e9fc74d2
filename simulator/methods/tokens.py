"""Token policies: which tokens a client learns from in each local step.

Every policy here follows Fed-FSTQ's Algorithm 1 schedule (fed-fstq-paper.md §1c), so that
the policies differ only in how they score tokens:
- steps before the first refresh train on every token (z = 1 at round start);
- every H-th step ("refresh", s mod H = 0) trains on the full loss and updates the scores;
- the steps in between train on the top ⌈keep · Tᵢ⌉ tokens of each sequence i (Tᵢ = its real
  length; instruction data: its number of response tokens, the only loss targets), ranked by
  score; special tokens ([CLS], [SEP], BOS/EOS) are always kept.

Scores are kept per **vocabulary token id** (REC 2: per-position scores cannot carry over to
the next minibatches), as an EMA with ρ over refresh steps, reset at every round start (a fresh
hook per client-round). Several occurrences of an id in one refresh batch are averaged before
the EMA update. The EMA starts at an id's first observed value, not at 0: from 0 it would be
biased towards 0 by ρⁿ after n observations, so a frequent id with small scores would outrank
a rare id with large ones. A token id that no refresh batch of this client-round has held is
kept (REC 2's +∞), by every policy alike, random included, so the controls differ from
Fed-FSTQ only in how they score the ids they have seen.

- `fisher` (Fed-FSTQ): gᵢ = ‖∂L/∂eᵢ‖² at the input embeddings, from the refresh step's own
  backward pass; with `align = true` (causal LM) target token i is scored by gᵢ₋₁, the input
  that predicts it, since the mask weights the loss term whose target is token i.
- `loss` (control): the per-token loss (causal LM: of predicting token i; classification:
  the loss of the sequence the token is in).
- `random` (control): uniform random scores from the client-round's seed, drawn afresh at
  every masked step; same schedule and keep ratio, so it isolates the Fisher proxy.
How a 0 weight acts on training is local.py's business (no gradient from that token).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from simulator.training.local import Batch


class TokenOptions(BaseModel):
    """keep = r_tok, refresh = H, rho = the score EMA's ρ. align (Fisher, causal LM): score
    target token i by the gradient at input i − 1, the input whose prediction the loss term i
    is, instead of by its own input embedding's gradient (default off: the paper's proxy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep: float = Field(0.5, gt=0, le=1)
    refresh: int = Field(10, gt=0)
    rho: float = Field(0.9, ge=0, lt=1)
    align: bool = False


class ScheduledHook:
    """One client-round of a scored token policy (see the module docstring)."""

    def __init__(
        self,
        options: TokenOptions,
        score: str,
        vocab_size: int,
        special_ids: list[int],
        seed: int,
    ) -> None:
        self.options = options
        self.score = score
        self.ema = torch.full((vocab_size,), math.inf)  # +inf until an id is first scored
        self.seen = torch.zeros(vocab_size, dtype=torch.bool)  # held by a refresh batch
        self.special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.generator = torch.Generator().manual_seed(seed)
        self.refreshed = False

    def _refresh_step(self, step: int) -> bool:
        return step % self.options.refresh == 0

    def wants_scores(self, step: int) -> bool:
        """Refresh steps compute per-token losses and embedding-gradient scores."""
        return self._refresh_step(step) and self.score != "random"

    def weights(self, step: int, batch: Batch) -> torch.Tensor | None:
        """All ones until the first refresh and at refresh steps, else the top-keep mask."""
        ids, eligible = batch.input_ids.cpu(), _eligible(batch)
        if self._refresh_step(step):
            self.refreshed = True
            self.seen[ids[eligible.bool()]] = True
            return None
        if not self.refreshed:
            return None
        if self.score == "random":
            scores = torch.rand(ids.shape, generator=self.generator)
            scores[~self.seen[ids]] = math.inf
        else:
            scores = self.ema[ids].clone()
        return top_tokens(scores, ids, eligible, self.special, self.options.keep)

    def observe(
        self, step: int, batch: Batch, token_loss: torch.Tensor, token_grad_sq: torch.Tensor
    ) -> None:
        """Fold the refresh step's per-token scores into the per-id EMA."""
        values = token_grad_sq if self.score == "fisher" else token_loss
        if self.score == "fisher" and self.options.align:
            values = torch.nn.functional.pad(values[:, :-1], (1, 0))  # input i − 1 → target i
        mask = _eligible(batch).bool()
        ids = batch.input_ids.cpu()[mask]
        values = values.detach().float().cpu()[mask]
        sums = torch.zeros_like(self.ema).index_add_(0, ids, values)
        counts = torch.zeros_like(self.ema).index_add_(0, ids, torch.ones_like(values))
        present = counts > 0
        mean = sums[present] / counts[present]
        rho = self.options.rho
        previous = self.ema[present]
        first = torch.isinf(previous)
        self.ema[present] = torch.where(first, mean, rho * previous + (1 - rho) * mean)


def _eligible(batch: Batch) -> torch.Tensor:
    """The positions a mask chooses among: the loss targets (instruction data: the response's
    tokens), else every real token."""
    return (batch.attention_mask if batch.targets is None else batch.targets).cpu()


def top_tokens(
    scores: torch.Tensor,
    ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special: torch.Tensor,
    keep: float,
) -> torch.Tensor:
    """A 0/1 weight per position: each row's top ⌈keep·length⌉ scores, special tokens first."""
    scores = scores.float().clone()
    scores[torch.isin(ids, special)] = math.inf
    scores[attention_mask == 0] = -math.inf
    lengths = attention_mask.sum(dim=1)
    quota = torch.ceil(keep * lengths.float()).long()
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(ids.shape[1]).expand_as(order).contiguous()
    )
    return ((ranks < quota[:, None]) & (attention_mask == 1)).float()


class _Scored:
    """A policy whose hooks score tokens by `score`."""

    score: ClassVar[str]
    Options = TokenOptions

    def __init__(self, options: TokenOptions | None = None) -> None:
        self.options = options or TokenOptions()

    def hook(self, vocab_size: int, special_ids: list[int], seed: int) -> ScheduledHook:
        """A fresh hook for one client-round (scores reset every round)."""
        return ScheduledHook(self.options, self.score, vocab_size, special_ids, seed)


class FisherTokens(_Scored):
    """Fed-FSTQ's token selection: embedding-gradient Fisher proxy."""

    score = "fisher"


class LossTokens(_Scored):
    """Control: per-token loss."""

    score = "loss"


class RandomTokens(_Scored):
    """Control: random tokens at the same keep ratio and schedule."""

    score = "random"


class TokenRecall:
    """Token Recall (the paper's metric): wraps a policy's hook and counts, over its masked
    steps, how many informative target tokens the masks keep (`recall`) against the share of
    all target tokens they keep (`keep_share`, what a random mask's recall is on average).

    informative: a boolean per vocabulary id (e.g. the synthetic task's answer words).
    """

    def __init__(self, hook: ScheduledHook, informative: torch.Tensor) -> None:
        self.hook = hook
        self.informative = informative
        self.kept = self.total = self.kept_all = self.total_all = 0

    def wants_scores(self, step: int) -> bool:
        """As the wrapped hook."""
        return self.hook.wants_scores(step)

    def observe(
        self, step: int, batch: Batch, token_loss: torch.Tensor, token_grad_sq: torch.Tensor
    ) -> None:
        """As the wrapped hook."""
        self.hook.observe(step, batch, token_loss, token_grad_sq)

    def weights(self, step: int, batch: Batch) -> torch.Tensor | None:
        """The wrapped hook's mask, counted."""
        weights = self.hook.weights(step, batch)
        if weights is not None:
            eligible = _eligible(batch).bool()
            kept = weights.bool() & eligible
            informative = self.informative[batch.input_ids.cpu()] & eligible
            self.kept += int((kept & informative).sum())
            self.total += int(informative.sum())
            self.kept_all += int(kept.sum())
            self.total_all += int(eligible.sum())
        return weights

    @property
    def recall(self) -> float:
        """Kept informative tokens over all informative tokens of the masked steps."""
        return self.kept / self.total if self.total else math.nan

    @property
    def keep_share(self) -> float:
        """Kept target tokens over all target tokens of the masked steps."""
        return self.kept_all / self.total_all if self.total_all else math.nan
