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
a rare id with large ones.

A token id that no refresh batch of this client-round has held scores the mean of the scored
ids' EMAs (special tokens aside; 0 before any refresh). Algorithm 1 resets the EMA to 0 (unscored
ids last) and an earlier version here used REC 2's +∞ (unscored ids first); on PubMedQA most
response ids are unscored within a round, so +∞ turned every policy's mask into the positional
prefix, and 0 restricts the mask to the few (mostly frequent) ids already seen. With the mean an
unscored id competes with the scored ones instead of winning or losing by construction. Chosen
by measurement (`studies/unscored_score.py`, docs/results/unscored-score.json: on the LLM study's
PubMedQA client-rounds, 6 clients x 2 refreshes, 66 % of targets unscored, the share of a refresh
batch's true Fisher score that a mask built from the scores known before it keeps): mean 0.735,
+∞ 0.666, median 0.566, random 0.488, 0 0.352 (oracle 0.962); for the loss score mean 0.593,
+∞ 0.601, median 0.564, random 0.505, 0 0.411. Equal scores (unscored ids among
themselves, repeated ids) are ordered by a random permutation from the hook's seed, never by
position. Per client-round `MaskDiagnostics` count what the masks kept (written to masks.csv).

- `fisher` (Fed-FSTQ): gᵢ = ‖∂L/∂eᵢ‖² at the input embeddings, from the refresh step's own
  backward pass; with `align = true` (causal LM) target token i is scored by gᵢ₋₁, the input
  that predicts it, since the mask weights the loss term whose target is token i.
- `loss` (control): the per-token loss (causal LM: of predicting token i; classification:
  the loss of the sequence the token is in).
- `random` (control): uniform random scores from the client-round's seed, drawn afresh at
  every masked step for every eligible token, scored or not; same schedule and keep ratio, so
  it isolates the Fisher proxy.
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

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `refresh = true` is no H

    keep: float = Field(0.5, gt=0, le=1)
    refresh: int = Field(10, gt=0)
    rho: float = Field(0.9, ge=0, lt=1)
    align: bool = False


class MaskDiagnostics:
    """Counts over one client-round's masked steps: how much the masks keep, how much of it is
    ids no refresh batch held, and how close the masks are to the positional prefix (the mask
    that keeps each row's first targets, what every policy degenerates to when it cannot
    tell tokens apart)."""

    def __init__(self) -> None:
        self.eligible = self.kept = self.kept_unscored = 0
        self.rows = self.prefix_rows = 0
        self.jaccard = 0.0

    def add(self, weights: torch.Tensor, eligible: torch.Tensor, unscored: torch.Tensor) -> None:
        """Count one masked step's mask [B, T] over its eligible positions."""
        kept = weights.bool() & eligible
        quota = kept.sum(dim=1, keepdim=True)
        prefix = eligible & (eligible.long().cumsum(dim=1) <= quota)
        rows = eligible.any(dim=1)
        inter = (kept & prefix).sum(dim=1).float()
        union = (kept | prefix).sum(dim=1).float()
        self.eligible += int(eligible.sum())
        self.kept += int(kept.sum())
        self.kept_unscored += int((kept & unscored).sum())
        self.rows += int(rows.sum())
        self.prefix_rows += int(((kept == prefix).all(dim=1) & rows).sum())
        self.jaccard += float((inter / union.clamp_min(1))[rows & (union > 0)].sum())
        self.jaccard += float((rows & (union == 0)).sum())  # an empty mask is its empty prefix

    def summary(self) -> dict[str, float] | None:
        """kept_share (kept / eligible positions), unscored_share (kept positions whose id no
        refresh batch held / kept), prefix_jaccard (mean over rows of |mask ∩ prefix| /
        |mask ∪ prefix|), prefix_rows (share of rows whose mask is the prefix); None when
        no step was masked."""
        if not self.rows:
            return None
        return {
            "kept_share": self.kept / max(self.eligible, 1),
            "unscored_share": self.kept_unscored / max(self.kept, 1),
            "prefix_jaccard": self.jaccard / self.rows,
            "prefix_rows": self.prefix_rows / self.rows,
        }


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
        self.ema = torch.full((vocab_size,), math.nan)  # NaN until an id is first scored
        self.seen = torch.zeros(vocab_size, dtype=torch.bool)  # held by a refresh batch
        self.special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
        self.generator = torch.Generator().manual_seed(seed)
        self.refreshed = False
        self.diagnostics = MaskDiagnostics()

    def _refresh_step(self, step: int) -> bool:
        return step % self.options.refresh == 0

    def wants_scores(self, step: int) -> bool:
        """Refresh steps compute per-token losses and embedding-gradient scores."""
        return self._refresh_step(step) and self.score != "random"

    def unscored_score(self) -> float:
        """The score of an id no refresh batch of this round has held: the mean of the
        scored ids' EMAs, special tokens (always kept) aside (see the module docstring)."""
        scored = ~torch.isnan(self.ema)
        scored[self.special] = False
        scored = self.ema[scored]
        return float(scored.mean()) if len(scored) else 0.0

    def weights(self, step: int, batch: Batch) -> torch.Tensor | None:
        """All ones until the first refresh and at refresh steps, else the top-keep mask."""
        ids, eligible = batch.input_ids.cpu(), _eligible(batch).bool()
        if self._refresh_step(step):
            self.refreshed = True
            self.seen[ids[eligible]] = True
            return None
        if not self.refreshed:
            return None
        if self.score == "random":
            scores = torch.rand(ids.shape, generator=self.generator)
        else:
            scores = self.ema[ids].nan_to_num(self.unscored_score())
        weights = top_tokens(
            scores, ids, eligible.long(), self.special, self.options.keep, self.generator
        )
        self.diagnostics.add(weights, eligible, ~self.seen[ids])
        return weights

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
        self.ema[present] = torch.where(
            torch.isnan(previous), mean, rho * previous + (1 - rho) * mean
        )

    def mask_summary(self) -> dict[str, float] | None:
        """The round's mask diagnostics (MaskDiagnostics.summary)."""
        return self.diagnostics.summary()


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
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A 0/1 weight per position: each row's top ⌈keep·length⌉ scores, special tokens first.

    Equal scores are ordered by a random permutation from `generator` (a mask must not favour
    early positions); without one (inference), by position.
    """
    scores = scores.float().clone()
    scores[torch.isin(ids, special)] = math.inf
    scores[attention_mask == 0] = -math.inf
    lengths = attention_mask.sum(dim=1)
    quota = torch.ceil(keep * lengths.float()).long()
    if generator is None:
        order = scores.argsort(dim=1, descending=True, stable=True)
    else:
        shuffle = torch.rand(scores.shape, generator=generator).argsort(dim=1)
        ranked = scores.gather(1, shuffle).argsort(dim=1, descending=True, stable=True)
        order = shuffle.gather(1, ranked)
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

    def mask_summary(self) -> dict[str, float] | None:
        """As the wrapped hook."""
        return self.hook.mask_summary()

    @property
    def recall(self) -> float:
        """Kept informative tokens over all informative tokens of the masked steps."""
        return self.kept / self.total if self.total else math.nan

    @property
    def keep_share(self) -> float:
        """Kept target tokens over all target tokens of the masked steps."""
        return self.kept_all / self.total_all if self.total_all else math.nan
