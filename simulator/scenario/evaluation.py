"""[evaluation]: cadence, metric, targets and generated answers."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from simulator.scenario.fields import MAX_ROUNDS, Count, Model, Rounds, Slug


class Evaluation(Model):
    """Evaluate every E rounds; targets refer to `metric` (default: the mode's first metric).

    Causal LM on instruction data: also greedy generations for the first `generate_samples`
    held-out prompts every `generate_every` evaluated rounds (0: never), scored by ROUGE-L
    against the reference responses (and, on PubMedQA, by the decision word's accuracy).
    """

    every: Rounds = 1
    targets: list[Annotated[float, Field(allow_inf_nan=False)]] = []
    metric: Slug | None = None
    generate_every: Annotated[int, Field(ge=0, le=MAX_ROUNDS)] = 0
    generate_samples: Count = 32
    max_new_tokens: Annotated[int, Field(gt=0, le=1024)] = 48
