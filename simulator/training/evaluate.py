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
is the reference decision; on QA data (evaluation.QA_KINDS) SQuAD's `exact_match` and
`token_f1` too (text_metrics.py).

Views: every metric also per view of the scored rows (`evaluate_views`: a group or label value,
or a client), from the same forward pass: the per-row NLL sums and token counts (accuracy:
the per-row hits) are split by view, so a view's NLL is its own tokens' mean, as the overall
one is. Per-client evaluation scores each client's held-out shard (`client_holdout`: a seeded
share of the client's partition taken out before training, the per-client test split of LEAF,
FedScale and Flower Datasets, so each client is judged on data from its own distribution) and
summarises the clients as the mean, the worst decile (10th percentile of a higher-is-better
metric, 90th of a lower-is-better one) and the spread (population std).

The pass costs what it must: no gradient, the LM head only at target positions, batches of
similar lengths (sorted), so little padding is computed, and the tokens every held-out row
starts with (a chat template's system header: 35 of ~70 tokens on the LLM quickstart) run
through the model once per evaluation, their keys and values shared by every batch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from simulator.errors import DataError, located
from simulator.recorder import lower_is_better
from simulator.scenario import FileData, PubMedQAData, RealTraining, SyntheticData
from simulator.scenario.evaluation import CLIENT_VIEWS, QA_KINDS, Evaluation
from simulator.seeds import rng
from simulator.training.data import (
    ANSWER_WORDS,
    PUBMEDQA_LABELS,
    SYNTHETIC_ANSWER,
    TextData,
    Tokens,
    pad_id,
)
from simulator.training.models import AdapterModel

if TYPE_CHECKING:
    from simulator.training.task import RealTask

log = logging.getLogger(__name__)

Views = dict[str, dict[str, float]]  # view (group value, client, clients:<stat>) -> metrics


@dataclass(frozen=True)
class Evaluated:
    """One evaluation of a global state: the overall metrics, the views (evals.csv rows with a
    `group`), each client's metrics (per-client evaluation), the generated samples, and the
    host seconds the per-client part took (0 when answered from the replay cache)."""

    metrics: dict[str, float]
    views: Views = field(default_factory=dict)
    clients: Views = field(default_factory=dict)
    samples: list[dict[str, str]] = field(default_factory=list)
    client_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (the replay cache stores it)."""
        return asdict(self)


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
    return evaluate_views(model, tokens, indices, batch_size, answers)[0]


@torch.no_grad()
def evaluate_views(
    model: AdapterModel,
    tokens: Tokens,
    indices: np.ndarray,
    batch_size: int,
    answers: Answers | None = None,
    keys: np.ndarray | None = None,
) -> tuple[dict[str, float], Views]:
    """The metrics over the examples at `indices`, and with keys (keys[i]: the view of
    indices[i]) the metrics of each view's examples, from the same pass; views in order of
    first appearance."""
    model.model.eval()
    lengths = tokens.attention_mask[torch.from_numpy(indices.copy())].sum(dim=1).numpy()
    order = np.argsort(lengths, kind="stable")
    indices = indices[order]
    per_row = None if keys is None else np.zeros((3, len(indices)))  # loss, count, hits
    total_loss = 0.0
    count = correct = ranked = 0
    prefix = None
    if tokens.targets is not None:  # instruction data: a shared template header is run once
        rows = torch.from_numpy(indices.copy())
        prefix = model.prefix(tokens.input_ids[rows], tokens.targets[rows])
    for start in range(0, len(indices), batch_size):
        rows = torch.from_numpy(indices[start : start + batch_size])
        span = slice(start, start + len(rows))
        mask = tokens.attention_mask[rows]
        width = int(mask.sum(dim=1).max())
        ids = tokens.input_ids[rows, :width].to(model.device)
        mask = mask[:, :width].to(model.device)
        if model.task == "classification":
            with model.autocast():
                logits = model.model(input_ids=ids, attention_mask=mask).logits.float()
            labels = tokens.labels[rows].to(model.device)
            total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            hits = logits.argmax(dim=-1) == labels
            correct += int(hits.sum())
            count += len(rows)
            if per_row is not None:
                losses = F.cross_entropy(logits, labels, reduction="none")
                per_row[0, span] = losses.double().cpu().numpy()
                per_row[1, span] = 1.0
                per_row[2, span] = hits.cpu().numpy()
            continue
        targets = mask if tokens.targets is None else tokens.targets[rows, :width]
        keep = targets[:, 1:].to(model.device).bool()
        with model.autocast():
            logits = model.target_logits(mask, keep, input_ids=ids, prefix=prefix)
        said = ids[:, 1:][keep]
        total_loss += float(F.cross_entropy(logits, said, reduction="sum"))
        count += int(keep.sum())
        if answers is not None:
            hits = _ranked_hits(logits, keep, tokens.prompt_lengths[rows], rows, answers)
            correct += int(hits.sum())
            ranked += len(rows)
            if per_row is not None:
                per_row[2, span] = hits.numpy()
        if per_row is not None:
            losses = F.cross_entropy(logits, said, reduction="none").double()
            owner = torch.arange(len(rows), device=keep.device)[:, None].expand_as(keep)[keep]
            sums = losses.new_zeros(len(rows)).index_add_(0, owner, losses)
            per_row[0, span] = sums.cpu().numpy()
            per_row[1, span] = keep.sum(dim=1).cpu().numpy()
    truth = None if answers is None else answers.truth[torch.from_numpy(indices.copy())].numpy()
    overall = _metrics(model.task, total_loss, count, correct, ranked, truth)
    if keys is None or per_row is None:
        return overall, {}
    keys = keys[order]
    views = {}
    for key in dict.fromkeys(keys[np.argsort(order, kind="stable")].tolist()):
        at = keys == key
        loss, tokens_in, hits_in = per_row[:, at].sum(axis=1)
        scored = int(at.sum()) if answers is not None else 0
        views[str(key)] = _metrics(
            model.task, loss, tokens_in, hits_in, scored, None if truth is None else truth[at]
        )
    return overall, views


def _metrics(
    task: str, loss: float, count: float, correct: float, ranked: int, truth: np.ndarray | None
) -> dict[str, float]:
    """The metrics of summed losses, counts and hits (one formula for the whole and a view)."""
    mean = float(loss / max(count, 1))
    if task == "classification":
        return {"accuracy": float(correct / max(count, 1)), "loss": mean}
    metrics = {"perplexity": math.exp(min(mean, 700.0)), "nll": mean}
    if truth is not None:
        metrics["answer_accuracy"] = float(correct / max(ranked, 1))
        metrics["majority_rate"] = float(np.bincount(truth).max()) / max(len(truth), 1)
    return metrics


def _ranked_hits(
    logits: torch.Tensor,
    keep: torch.Tensor,
    prompt_lengths: torch.Tensor,
    rows: torch.Tensor,
    answers: Answers,
) -> torch.Tensor:
    """Which rows (bool, on the CPU) rank their own candidate first. The candidates share
    every token before the deciding one, so their log-likelihoods differ only by that token's
    log-probability at one position, whose normaliser they share: the logits rank them."""
    position = (prompt_lengths + answers.offset - 1).to(keep.device)  # predicts the deciding token
    flat = keep.flatten().cumsum(0).view_as(keep) - 1  # row of `logits` of each kept position
    at = flat[torch.arange(len(rows), device=keep.device), position]
    chosen = logits[at][:, answers.tokens.to(logits.device)].argmax(dim=-1).cpu()
    return chosen == answers.truth[rows]


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


def generation_scores(
    answers: list[str], data: TextData, indices: np.ndarray, decisions: bool, qa: bool = False
) -> dict[str, np.ndarray]:
    """Per answer: ROUGE-L against its reference, in any script (text_metrics.rouge_l; English
    scores as rouge-score's default does), PubMedQA's decision hit, and on QA data SQuAD's
    exact match and token F1."""
    from simulator.training.text_metrics import exact_match, rouge_l, token_f1

    references = [data.texts[i] for i in indices]
    scores = {"rouge_l": np.array(rouge_l(references, answers), dtype=np.float64)}
    if decisions:
        assert data.labels is not None
        said = [_first_word(answer) for answer in answers]
        truth = [PUBMEDQA_LABELS[data.labels[i]] for i in indices]
        scores["decision_accuracy"] = np.array(
            [a == b for a, b in zip(said, truth, strict=True)], dtype=np.float64
        )
    if qa:
        pairs = list(zip(references, answers, strict=True))
        scores["exact_match"] = np.array([exact_match(*pair) for pair in pairs])
        scores["token_f1"] = np.array([token_f1(*pair) for pair in pairs])
    return scores


def generation_metrics(
    answers: list[str], data: TextData, indices: np.ndarray, decisions: bool, qa: bool = False
) -> dict[str, float]:
    """The mean of each generation score (generation_scores)."""
    scores = generation_scores(answers, data, indices, decisions, qa)
    return {name: float(np.mean(values)) for name, values in scores.items()}


def view_keys(data: TextData, kind: str, by: str | None) -> np.ndarray | None:
    """Each held-out row's view for evaluation.by (its group or label value), or None."""
    if by is None:
        return None
    values, names = (
        (data.groups, data.group_names) if by == "group" else (data.labels, data.label_names)
    )
    if values is None or not names:
        column = "data.group = '<column>'" if by == "group" else "data.label = '<column>'"
        raise DataError(
            located(
                data.source,
                "evaluation.by",
                f"{by!r}, but these {kind} data have no {by} column to split the evaluation by",
                f"name the column ({column}; PubMedQA: data.group = 'mesh'), or remove "
                "evaluation.by",
            )
        )
    return np.asarray(names, dtype=object)[values[data.validation]]


def client_holdout(
    parts: list[np.ndarray], evaluation: Evaluation, seed: int, source: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training rows, held-out rows) per client: with per-client evaluation on, a seeded
    `client_holdout` share of each client's partition (at least one row, at least one left to
    train on) is held out before training; otherwise the partition is unchanged."""
    if not evaluation.clients_every:
        return parts, []
    kept, held = [], []
    for client, part in enumerate(parts):
        if len(part) < 2:
            raise DataError(
                located(
                    source,
                    "evaluation.clients_every",
                    f"client {client} has {len(part)} training example(s), too few to hold one "
                    "out for its own evaluation",
                    "raise partition.min_samples to 2 or more, or set clients_every = 0",
                )
            )
        size = min(max(1, round(evaluation.client_holdout * len(part))), len(part) - 1)
        out = np.zeros(len(part), dtype=bool)
        out[rng(seed, "data", 100, client).choice(len(part), size=size, replace=False)] = True
        kept.append(part[~out])
        held.append(part[out])
    return kept, held


def client_summary(clients: Views) -> Views:
    """Mean, worst decile and spread (population std) over clients of every metric."""
    mean, worst, spread = CLIENT_VIEWS
    summary: Views = {mean: {}, worst: {}, spread: {}}
    for metric in next(iter(clients.values()), {}):
        values = np.array([scores[metric] for scores in clients.values()])
        summary[mean][metric] = float(values.mean())
        summary[worst][metric] = float(np.percentile(values, 90 if lower_is_better(metric) else 10))
        summary[spread][metric] = float(values.std())
    return summary


def evaluate_task(task: RealTask, answers: bool, clients: bool) -> Evaluated:
    """The task's model (its adapter already set) on the held-out split, with the views the
    scenario asks for; with answers, also generations for the first generate_samples held-out
    prompts; with clients, every client's held-out shard."""
    spec, data, batch = task.evaluation, task.data, task.spec.eval_batch_size
    keys = view_keys(data, task.spec.data.kind, spec.by)
    metrics, views = evaluate_views(
        task.model, task.tokens, data.validation, batch, task.answers, keys
    )
    samples: list[dict[str, str]] = []
    if answers:
        rows = data.validation[: spec.generate_samples]
        said = generate(task.model, task.tokenizer, task.tokens, rows, spec.max_new_tokens, batch)
        decisions = isinstance(task.spec.data, PubMedQAData)
        scores = generation_scores(said, data, rows, decisions, task.spec.data.kind in QA_KINDS)
        metrics |= {name: float(np.mean(values)) for name, values in scores.items()}
        if keys is not None:
            for key in dict.fromkeys(keys[: len(rows)].tolist()):
                at = keys[: len(rows)] == key
                views[str(key)] |= {name: float(v[at].mean()) for name, v in scores.items()}
        assert data.prompts is not None
        samples = [
            {"prompt": data.prompts[i], "reference": data.texts[i], "answer": answer}
            for i, answer in zip(rows.tolist(), said, strict=True)
        ]
    per_client: Views = {}
    seconds = 0.0
    if clients and task.client_eval:
        start = time.perf_counter()
        held = np.concatenate(task.client_eval)
        owner = np.repeat(np.arange(len(task.client_eval)), [len(p) for p in task.client_eval])
        per_client = evaluate_views(task.model, task.tokens, held, batch, task.answers, owner)[1]
        views |= client_summary(per_client)
        seconds = time.perf_counter() - start
    return Evaluated(metrics, views, per_client, samples, seconds)


def _first_word(text: str) -> str:
    words = text.lower().split()
    return words[0].strip(".,:;!?") if words else ""
