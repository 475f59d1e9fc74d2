"""A client's local round: S AdamW steps on its own examples, with hooks for token policies.

The caller loads the global adapter into the one model; `train_local` runs the steps, returns
the adapter delta (new − start) and statistics, and leaves the model at the new state. Every
random draw (batch order, dropout) comes from the client-round's seed, so a client-round gives
the same delta in any process, executor or order.

Token-policy hooks (what Fed-FSTQ and its controls plug into):
- `TokenHook.weights(step, batch)` returns per-token loss weights for this step (None = all 1).
  Causal LM: the loss is Σ wᵢ·ℓᵢ / Σ wᵢ over target positions (padding excluded), so a token
  with weight 0 contributes no gradient. Classification has one loss per sequence, so a weight
  of 0 removes the token from attention (the first position, [CLS], always stays) and it again
  contributes no gradient; positive weights keep the token.
- `TokenHook.observe(step, batch, token_loss, token_grad_sq)` receives, when
  `wants_scores(step)` is true, the per-token losses (causal LM: the loss of predicting token i;
  classification: the sequence's loss at each of its tokens) and gᵢ = ‖∂L/∂eᵢ‖² at the input
  embeddings, from the same backward pass (the embeddings are fed as a leaf tensor).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from simulator.scenario import LocalTraining
from simulator.training.data import Tokens
from simulator.training.flops import FlopModel
from simulator.training.models import AdapterModel


@dataclass(frozen=True)
class Batch:
    """One step's examples, trimmed to their longest sequence."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor | None  # [B] class ids (classification)
    targets: torch.Tensor | None = None  # [B, T] loss targets (instruction data: the response)


class TokenHook(Protocol):
    """A token policy's view of local training."""

    def wants_scores(self, step: int) -> bool:
        """Whether this step must compute per-token losses and embedding-gradient scores."""

    def weights(self, step: int, batch: Batch) -> torch.Tensor | None:
        """Per-token loss weights [B, T] for this step, or None for all ones."""

    def observe(
        self, step: int, batch: Batch, token_loss: torch.Tensor, token_grad_sq: torch.Tensor
    ) -> None:
        """Per-token losses and squared embedding-gradient norms [B, T] of this step."""


@dataclass
class HostTime:
    """Host seconds spent in the model's math (what the simulator's overhead is measured by)."""

    forward: float = 0.0
    backward: float = 0.0
    optimizer: float = 0.0

    def total(self) -> float:
        """All three."""
        return self.forward + self.backward + self.optimizer


@dataclass
class LocalStats:
    """What a local round did."""

    steps: int = 0
    tokens: int = 0  # non-padding tokens processed
    positions: int = 0  # padded positions processed (what the FLOP count uses)
    work_flop: float = 0.0
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    host: HostTime = field(default_factory=HostTime)
    fisher: np.ndarray | None = None  # diagonal Fisher EMA of the adapter, when asked for
    mask: dict[str, float] | None = None  # the token hook's mask diagnostics, if it keeps any


def _batches(
    tokens: Tokens, indices: np.ndarray, batch_size: int, steps: int, gen: np.random.Generator
) -> list[Batch]:
    """`steps` batches drawn by epochs of a seeded permutation of the client's examples."""
    need = steps * min(batch_size, len(indices))
    epochs = -(-need // len(indices))
    order = np.concatenate([gen.permutation(indices) for _ in range(epochs)])
    size = min(batch_size, len(indices))
    batches = []
    for step in range(steps):
        rows = torch.from_numpy(order[step * size : (step + 1) * size])
        mask = tokens.attention_mask[rows]
        width = int(mask.sum(dim=1).max())
        labels = None if tokens.labels is None else tokens.labels[rows]
        targets = None if tokens.targets is None else tokens.targets[rows, :width]
        batches.append(Batch(tokens.input_ids[rows, :width], mask[:, :width], labels, targets))
    return batches


def _token_losses(
    model: AdapterModel,
    batch: Batch,
    embeds: torch.Tensor,
    weights: torch.Tensor | None,
    scores: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scalar training loss, per-token losses [B, T]) for one batch.

    Causal LM: the LM head runs only where a loss term is needed: the target positions with a
    nonzero weight, or every target position when the step scores tokens (per-token losses
    are then observed at all of them); elsewhere the per-token loss is 0.
    """
    mask = batch.attention_mask
    if model.task == "classification":
        if weights is not None:
            mask = mask * (weights > 0).long()
            mask[:, 0] = batch.attention_mask[:, 0]
        logits = model.model(inputs_embeds=embeds, attention_mask=mask).logits
        per_seq = F.cross_entropy(logits.float(), batch.labels, reduction="none")
        return per_seq.mean(), per_seq[:, None].expand_as(mask) * batch.attention_mask
    target_mask = (mask if batch.targets is None else batch.targets)[:, 1:].float()
    weight = target_mask if weights is None else target_mask * weights[:, 1:].float()
    keep = (target_mask if scores else weight) > 0
    logits = model.target_logits(mask, keep, inputs_embeds=embeds)
    losses = torch.zeros_like(target_mask).masked_scatter(
        keep, F.cross_entropy(logits, batch.input_ids[:, 1:][keep], reduction="none")
    )
    loss = (losses * weight).sum() / weight.sum().clamp_min(1e-12)
    return loss, F.pad(losses, (1, 0))


def train_local(
    model: AdapterModel,
    tokens: Tokens,
    indices: np.ndarray,
    settings: LocalTraining,
    flops: FlopModel,
    seed: np.random.SeedSequence,
    hook: TokenHook | None = None,
    fisher_rho: float | None = None,
    correct: Callable[[], None] | None = None,
) -> tuple[np.ndarray, LocalStats]:
    """Run the local steps from the model's current adapter; (delta, stats).

    With fisher_rho, also estimate the diagonal Fisher of the adapter coordinates as an EMA of
    the squared (token-masked, unclipped) gradients, F̂ ← ρF̂ + (1−ρ)·g⊙g from F̂ = 0
    (Algorithm 1), into stats.fisher. `correct` (a client algorithm's, algorithms.py) then
    edits the gradients in place, before clipping and the AdamW step.
    """
    gen = np.random.default_rng(seed)
    torch.manual_seed(int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    start = model.get_flat()
    optimizer = torch.optim.AdamW(model.params, lr=settings.lr, weight_decay=settings.weight_decay)
    embed = model.model.get_input_embeddings()
    stats = LocalStats()
    fisher = None if fisher_rho is None else torch.zeros(model.size, device=model.device)
    model.model.train()
    device = model.device
    for step, cpu_batch in enumerate(
        _batches(tokens, indices, settings.batch_size, settings.steps, gen), start=1
    ):
        batch = Batch(*(None if t is None else t.to(device) for t in vars(cpu_batch).values()))
        scores = hook is not None and hook.wants_scores(step)
        weights = None if hook is None else hook.weights(step, batch)
        t0 = time.perf_counter()
        with torch.no_grad():
            embeds = embed(batch.input_ids)
        embeds.requires_grad_(scores)
        with model.autocast():
            loss, token_loss = _token_losses(model, batch, embeds, weights, scores)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if scores:
            hook.observe(step, batch, token_loss.detach(), embeds.grad.float().pow(2).sum(-1))
        if fisher is not None:
            grads = torch.cat([p.grad.reshape(-1).float() for p in model.params])
            fisher.mul_(fisher_rho).add_(grads.square(), alpha=1 - fisher_rho)
        if correct is not None:
            correct()
        if settings.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.params, settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        work = flops.train_step(*batch.input_ids.shape, scores, fisher is not None)
        _count(stats, batch, float(loss.detach()), work, (t1 - t0, t2 - t1, t3 - t2))
    if fisher is not None:
        stats.fisher = fisher.cpu().numpy()
    if hasattr(hook, "mask_summary"):  # simulator/methods/tokens.py: MaskDiagnostics
        stats.mask = hook.mask_summary()
    return model.get_flat() - start, stats


def _count(
    stats: LocalStats,
    batch: Batch,
    loss: float,
    work: float,
    seconds: tuple[float, float, float],
) -> None:
    rows, width = batch.input_ids.shape
    stats.steps += 1
    stats.tokens += int(batch.attention_mask.sum())
    stats.positions += rows * width
    stats.work_flop += work
    if stats.steps == 1:
        stats.loss_first = loss
    stats.loss_last = loss
    stats.host.forward += seconds[0]
    stats.host.backward += seconds[1]
    stats.host.optimizer += seconds[2]
