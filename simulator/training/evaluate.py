"""Evaluation of the global adapter on the held-out split (server side, no client cost).

Classification: `accuracy` and mean cross-entropy `loss`. Causal LM: `nll`, the mean negative
log-likelihood per target token, and `perplexity` = exp(nll). The first metric of each is the
one evaluation targets refer to by default (scenario.METRICS).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from simulator.training.data import Tokens
from simulator.training.models import AdapterModel


@torch.no_grad()
def evaluate(
    model: AdapterModel, tokens: Tokens, indices: np.ndarray, batch_size: int
) -> dict[str, float]:
    """Metrics of the model's current adapter over the examples at `indices`."""
    model.model.eval()
    total_loss = 0.0
    count = correct = 0
    for start in range(0, len(indices), batch_size):
        rows = torch.from_numpy(indices[start : start + batch_size])
        mask = tokens.attention_mask[rows]
        width = int(mask.sum(dim=1).max())
        ids = tokens.input_ids[rows, :width].to(model.device)
        mask = mask[:, :width].to(model.device)
        logits = model.model(input_ids=ids, attention_mask=mask).logits.float()
        if model.task == "classification":
            labels = tokens.labels[rows].to(model.device)
            total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=-1) == labels).sum())
            count += len(rows)
        else:
            target = mask[:, 1:].float()
            losses = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                ids[:, 1:].reshape(-1),
                reduction="none",
            )
            total_loss += float((losses * target.reshape(-1)).sum())
            count += int(target.sum())
    mean = total_loss / max(count, 1)
    if model.task == "classification":
        return {"accuracy": correct / max(count, 1), "loss": mean}
    return {"perplexity": math.exp(min(mean, 700.0)), "nll": mean}
