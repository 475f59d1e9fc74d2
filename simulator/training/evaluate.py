"""Evaluation of the global adapter on the held-out split (server side, no client cost).

Classification: `accuracy` and mean cross-entropy `loss`. Causal LM: `nll`, the mean negative
log-likelihood per target token (instruction data: per response token), and `perplexity` =
exp(nll). The first metric of each is the one evaluation targets refer to by default
(scenario.METRICS). Where the answers come from a known set (the synthetic instructions' class
words, PubMedQA's yes/no/maybe, a file's declared labels), the same forward pass also gives
`answer_accuracy`: each candidate answer ranked by its log-likelihood after the prompt (the
multiple-choice convention of lm-evaluation-harness), with `majority_rate`, the held-out share
of the most common answer, beside it. The candidates' log-likelihoods are taken up to the first
token that tells them apart (their shared tokens before it add the same to each); the tokens
after it are not scored, since that would take a forward pass per candidate. Instruction data
can also be scored on greedy generations (`generate`): `rouge_l`, the mean ROUGE-L F-measure
against the reference responses (Google's rouge-score, the package behind the usual ROUGE-1.5.5
numbers, with stemming), and on PubMedQA `decision_accuracy`, how often the answer's first word
is the reference decision.

The pass costs what it must: no gradient, the LM head only at target positions, batches of
similar lengths (sorted), so little padding is computed, and the tokens every held-out row
starts with (a chat template's system header: 35 of ~70 tokens on the LLM quickstart) run
through the model once per evaluation, their keys and values shared by every batch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from simulator.scenario import FileData, PubMedQAData, RealTraining, SyntheticData
from simulator.training.data import (
    ANSWER_WORDS,
    PUBMEDQA_LABELS,
    SYNTHETIC_ANSWER,
    TextData,
    Tokens,
    pad_id,
)
from simulator.training.models import AdapterModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answers:
    """A known answer set, as what tells the candidates apart: the response's `offset`-th token,
    which is `tokens[c]` for candidate c (the tokens before it are the same for all)."""

    tokens: torch.Tensor  # int64 [K]
    offset: int
    truth: torch.Tensor  # int64 [N]: each example's candidate (its label id)


def candidate_answers(data: TextData, spec: RealTraining) -> list[str] | None:
    """The candidate responses of a data set whose answers come from a known set, else None."""
    if data.prompts is None or data.labels is None:
        return None
    if isinstance(spec.data, SyntheticData):
        return [SYNTHETIC_ANSWER.format(word=ANSWER_WORDS[c]) for c in range(len(data.label_names))]
    if isinstance(spec.data, PubMedQAData):
        return [label.capitalize() for label in PUBMEDQA_LABELS]
    if isinstance(spec.data, FileData) and spec.data.labels:
        return list(data.label_names)
    return None


def answer_set(
    candidates: list[str] | None, data: TextData, tokenizer: Any, tokens: Tokens
) -> Answers | None:
    """The candidates as `Answers`, when one token position tells them apart and every held-out
    response has its own candidate's tokens there; otherwise None (logged)."""
    if candidates is None:
        return None
    assert data.labels is not None and tokens.prompt_lengths is not None
    ids = tokenizer(candidates, add_special_tokens=False)["input_ids"]
    offset = 0
    while all(len(c) > offset + 1 for c in ids) and len({c[offset] for c in ids}) == 1:
        offset += 1
    heads = [c[: offset + 1] for c in ids]
    if min(map(len, heads)) <= offset or len({h[offset] for h in heads}) < len(heads):
        log.warning("answer_accuracy not computed: no one token tells %s apart", candidates)
        return None
    truth = torch.from_numpy(data.labels.copy())
    rows = torch.from_numpy(data.validation)
    at = tokens.prompt_lengths[rows, None] + torch.arange(offset + 1)
    width = tokens.input_ids.shape[1]
    said = tokens.input_ids[rows[:, None], at.clamp(max=width - 1)]
    if at.max() >= width or not torch.equal(said, torch.tensor(heads)[truth[rows]]):
        log.warning("answer_accuracy not computed: responses do not start as %s", candidates)
        return None
    return Answers(torch.tensor([h[offset] for h in heads]), offset, truth)


@torch.no_grad()
def evaluate(
    model: AdapterModel,
    tokens: Tokens,
    indices: np.ndarray,
    batch_size: int,
    answers: Answers | None = None,
) -> dict[str, float]:
    """Metrics of the model's current adapter over the examples at `indices`."""
    model.model.eval()
    lengths = tokens.attention_mask[torch.from_numpy(indices.copy())].sum(dim=1).numpy()
    indices = indices[np.argsort(lengths, kind="stable")]
    total_loss = 0.0
    count = correct = ranked = 0
    prefix = None
    if tokens.targets is not None:  # instruction data: a shared template header is run once
        rows = torch.from_numpy(indices.copy())
        prefix = model.prefix(tokens.input_ids[rows], tokens.targets[rows])
    for start in range(0, len(indices), batch_size):
        rows = torch.from_numpy(indices[start : start + batch_size])
        mask = tokens.attention_mask[rows]
        width = int(mask.sum(dim=1).max())
        ids = tokens.input_ids[rows, :width].to(model.device)
        mask = mask[:, :width].to(model.device)
        if model.task == "classification":
            with model.autocast():
                logits = model.model(input_ids=ids, attention_mask=mask).logits.float()
            labels = tokens.labels[rows].to(model.device)
            total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=-1) == labels).sum())
            count += len(rows)
            continue
        targets = mask if tokens.targets is None else tokens.targets[rows, :width]
        keep = targets[:, 1:].to(model.device).bool()
        with model.autocast():
            logits = model.target_logits(mask, keep, input_ids=ids, prefix=prefix)
        total_loss += float(F.cross_entropy(logits, ids[:, 1:][keep], reduction="sum"))
        count += int(keep.sum())
        if answers is not None:
            correct += _ranked_correct(logits, keep, tokens.prompt_lengths[rows], rows, answers)
            ranked += len(rows)
    mean = total_loss / max(count, 1)
    if model.task == "classification":
        return {"accuracy": correct / max(count, 1), "loss": mean}
    metrics = {"perplexity": math.exp(min(mean, 700.0)), "nll": mean}
    if answers is not None:
        truth = answers.truth[torch.from_numpy(indices.copy())]
        metrics["answer_accuracy"] = correct / max(ranked, 1)
        metrics["majority_rate"] = float(truth.bincount().max()) / max(len(truth), 1)
    return metrics


def _ranked_correct(
    logits: torch.Tensor,
    keep: torch.Tensor,
    prompt_lengths: torch.Tensor,
    rows: torch.Tensor,
    answers: Answers,
) -> int:
    """How many rows rank their own candidate first. The candidates share every token before
    the deciding one, so their log-likelihoods differ only by that token's log-probability at
    one position, whose normaliser they share: the logits rank them."""
    position = (prompt_lengths + answers.offset - 1).to(keep.device)  # predicts the deciding token
    flat = keep.flatten().cumsum(0).view_as(keep) - 1  # row of `logits` of each kept position
    at = flat[torch.arange(len(rows), device=keep.device), position]
    chosen = logits[at][:, answers.tokens.to(logits.device)].argmax(dim=-1).cpu()
    return int((chosen == answers.truth[rows]).sum())


@torch.no_grad()
def generate(
    model: AdapterModel,
    tokenizer: object,
    tokens: Tokens,
    indices: np.ndarray,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy answers to the prompts of the examples at `indices` (left-padded batches of
    similar prompt lengths, decoded with the KV cache), in the order of `indices`."""
    assert tokens.prompt_lengths is not None, "generation needs instruction data"
    model.model.eval()
    pad = pad_id(tokenizer)
    order = np.argsort(
        tokens.prompt_lengths[torch.from_numpy(indices.copy())].numpy(),
        kind="stable",
    )
    answers: list[str] = [""] * len(indices)
    for start in range(0, len(indices), batch_size):
        places = order[start : start + batch_size]
        rows = indices[places].tolist()
        lengths = [int(tokens.prompt_lengths[r]) for r in rows]
        width = max(lengths)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            ids[i, width - length :] = tokens.input_ids[row, :length]
            mask[i, width - length :] = 1
        with model.autocast():
            out = model.model.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=pad,
            )
        said = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for place, text in zip(places.tolist(), said, strict=True):
            answers[place] = text
    return [answer.strip() for answer in answers]


def generation_metrics(
    answers: list[str], data: TextData, indices: np.ndarray, decisions: bool
) -> dict[str, float]:
    """ROUGE-L of answers against the references, in any script (text_metrics.rouge_l; English
    scores as rouge-score's default does), and PubMedQA's decision accuracy."""
    from simulator.training.text_metrics import rouge_l

    references = [data.texts[i] for i in indices]
    metrics = {"rouge_l": float(np.mean(rouge_l(references, answers)))}
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
