"""Evaluation of the global adapter on the held-out split (server side, no client cost).

Classification: `accuracy` and mean cross-entropy `loss`. Causal LM: `nll`, the mean negative
log-likelihood per target token (instruction data: per response token), and `perplexity` =
exp(nll). The first metric of each is the one evaluation targets refer to by default
(scenario.METRICS). Instruction data can also be scored on greedy generations (`generate`):
`rouge_l`, the mean ROUGE-L F-measure against the reference responses (Google's rouge-score,
the package behind the usual ROUGE-1.5.5 numbers, with stemming), and on PubMedQA
`decision_accuracy`, how often the answer's first word is the reference decision.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from simulator.training.data import PUBMEDQA_LABELS, TextData, Tokens, pad_id
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
            targets = mask if tokens.targets is None else tokens.targets[rows, :width]
            target = targets[:, 1:].to(model.device).float()
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


@torch.no_grad()
def generate(
    model: AdapterModel,
    tokenizer: object,
    tokens: Tokens,
    indices: np.ndarray,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy answers to the prompts of the examples at `indices` (left-padded batches)."""
    assert tokens.prompt_lengths is not None, "generation needs instruction data"
    model.model.eval()
    pad = pad_id(tokenizer)
    answers: list[str] = []
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size].tolist()
        lengths = [int(tokens.prompt_lengths[r]) for r in rows]
        width = max(lengths)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            ids[i, width - length :] = tokens.input_ids[row, :length]
            mask[i, width - length :] = 1
        out = model.model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
        answers += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def generation_metrics(
    answers: list[str], data: TextData, indices: np.ndarray, decisions: bool
) -> dict[str, float]:
    """ROUGE-L of answers against the references (and PubMedQA's decision accuracy)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    references = [data.texts[i] for i in indices]
    scores = [
        scorer.score(ref, answer)["rougeL"].fmeasure
        for ref, answer in zip(references, answers, strict=True)
    ]
    metrics = {"rouge_l": float(np.mean(scores))}
    if decisions:
        assert data.labels is not None
        said = [_first_word(answer) for answer in answers]
        truth = [PUBMEDQA_LABELS[data.labels[i]] for i in indices]
        hits = [a == b for a, b in zip(said, truth, strict=True)]
        metrics["decision_accuracy"] = float(np.mean(hits))
    return metrics


def _first_word(text: str) -> str:
    words = text.lower().split()
    return words[0].strip(".,:;!?") if words else ""
