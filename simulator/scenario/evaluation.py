"""[evaluation]: cadence, metric, targets, generated answers and evaluation views."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from simulator.scenario.fields import MAX_ROUNDS, Count, Model, Rounds, Slug

QA_KINDS = ("squad",)  # data kinds whose generations are also scored by exact match and F1
QA_METRICS = ("exact_match", "token_f1")
CLIENT_VIEWS = ("clients:mean", "clients:worst10", "clients:std")  # evals.csv `group` values


class Evaluation(Model):
    """Evaluate every E rounds; targets refer to `metric` (default: the mode's first metric).

    Causal LM on instruction data: also greedy generations for the first `generate_samples`
    held-out prompts every `generate_every` evaluated rounds (0: never), scored by ROUGE-L
    against the reference responses (on PubMedQA also by the decision word's accuracy, on QA
    data by exact match and token F1).

    Views (real training): `by = "group"` (or "label") also writes every metric per value of
    the held-out rows' group (label) column, from the same forward pass and generations.
    `clients_every = k` evaluates the global model on every client's own held-out shard (a
    seeded `client_holdout` share of each client's partition, taken out before training) at
    the evaluated rounds that are multiples of k and the last; 0 (default): never.
    """

    every: Rounds = 1
    targets: list[Annotated[float, Field(allow_inf_nan=False)]] = []
    metric: Slug | None = None
    generate_every: Annotated[int, Field(ge=0, le=MAX_ROUNDS)] = 0
    generate_samples: Count = 32
    max_new_tokens: Annotated[int, Field(gt=0, le=1024)] = 48
    by: Literal["group", "label"] | None = None
    clients_every: Annotated[int, Field(ge=0, le=MAX_ROUNDS)] = 0
    client_holdout: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.2
