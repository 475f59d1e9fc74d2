"""Token-level inference reduction: keep only the top-scored tokens of each input.

Fed-FSTQ reuses its token scores at inference "without gradients" (fed-fstq-paper.md §5: up to
1.55× end-to-end speed-up on Jetson-class devices; the procedure and keep ratio are not given).
Here the scores are a table per vocabulary id (e.g. the Fisher proxy gᵢ = ‖∂L/∂eᵢ‖² averaged
per id, `token_scores`), and `reduce_tokens` keeps each sequence's special tokens and its top
⌈keep·length⌉ tokens by score, in their original order, and **compacts** the batch: shorter
sequences are what makes inference faster (a mask alone would not). `bench/codecs.py` measures
the speed-up and the accuracy it costs on MiniLM.
"""

from __future__ import annotations

import torch

from simulator.methods.tokens import top_tokens
from simulator.training.data import Tokens
from simulator.training.models import AdapterModel


def reduce_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    scores: torch.Tensor,
    special_ids: list[int],
    keep: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) keeping the top tokens of each row, compacted to the left."""
    special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    kept = top_tokens(scores[input_ids], input_ids, attention_mask, special, keep).bool()
    lengths = kept.sum(dim=1)
    width = int(lengths.max())
    # stable sort moves kept positions first, in their original order
    order = torch.sort((~kept).to(torch.int8), dim=1, stable=True).indices[:, :width]
    ids = torch.gather(input_ids, 1, order)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return ids * mask, mask


def token_scores(
    model: AdapterModel, tokens: Tokens, indices: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Mean Fisher proxy ‖∂L/∂eᵢ‖² per vocabulary id over some labelled examples.

    Ids never seen score +inf, so reduction never drops a token it knows nothing about.
    """
    embed = model.model.get_input_embeddings()
    vocab = embed.num_embeddings
    sums = torch.zeros(vocab)
    counts = torch.zeros(vocab)
    model.model.eval()
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        mask = tokens.attention_mask[rows]
        width = int(mask.sum(dim=1).max())
        ids, mask = tokens.input_ids[rows, :width], mask[:, :width]
        embeds = embed(ids).detach().requires_grad_()
        with model.autocast():
            logits = model.model(inputs_embeds=embeds, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), tokens.labels[rows])
        (grad,) = torch.autograd.grad(loss, embeds)
        on = mask.bool()
        sums.index_add_(0, ids[on], grad.pow(2).sum(-1)[on])
        counts.index_add_(0, ids[on], torch.ones(int(on.sum())))
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, torch.inf))
