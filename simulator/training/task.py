"""What every arm of a real run shares and no client owns, built once per process.

`RealTask` holds the one base model with its LoRA adapter, the data set tokenised once, the
partition and the FLOP model; clients train on it (client.py) and the server evaluates its
global state on it (`evaluate`).
"""

from __future__ import annotations

import numpy as np
import torch

from simulator.scenario import Scenario
from simulator.training.client import Arm
from simulator.training.data import load_data, tokenize
from simulator.training.evaluate import (
    Evaluated,
    answer_set,
    candidate_answers,
    client_holdout,
    evaluate_task,
)
from simulator.training.flops import FlopModel
from simulator.training.models import load_model, load_tokenizer
from simulator.training.partition import partition


class RealTask:
    """The run's shared model, data, tokens and partition (built once per process)."""

    def __init__(self, scenario: Scenario) -> None:
        spec = scenario.training
        torch.set_num_threads(spec.threads)  # results depend on it: the run's, in every process
        self.spec = spec
        self.seed = scenario.seed
        self.data = load_data(spec.data, spec.task, scenario.seed)
        self.evaluation = scenario.evaluation
        self.rounds = scenario.server.rounds
        self.tokenizer = tokenizer = load_tokenizer(spec)
        self.tokens = tokenize(self.data, tokenizer, spec.local.seq_len)
        candidates = candidate_answers(self.data, spec)
        self.answers = answer_set(candidates, self.data, tokenizer, self.tokens)
        parts = partition(spec.partition, self.data, scenario.population.clients, scenario.seed)
        # per-client evaluation: each client's held-out shard, taken out of its training rows
        self.parts, self.client_eval = client_holdout(
            parts, self.evaluation, scenario.seed, self.data.source
        )
        self.model = load_model(
            spec, len(self.data.label_names), tokenizer.pad_token_id, scenario.seed
        )
        self.special_ids = list(tokenizer.all_special_ids)
        self.vocab_size = self.model.model.get_input_embeddings().num_embeddings
        self._configure(freeze_a=False)

    def _configure(self, freeze_a: bool) -> None:
        self.model.configure(freeze_a)
        self.freeze_a = freeze_a
        self.flops = FlopModel.of(self.model.model, self.spec.task)

    def use(self, arm: Arm) -> None:
        """Configure the model for an arm (what trains) when it differs from the current one."""
        if arm.freeze_a != self.freeze_a:
            self._configure(arm.freeze_a)

    def initial_flat(self, arm: Arm) -> np.ndarray:
        """The seeded initial adapter of an arm (the same for every arm of a run)."""
        self._configure(arm.freeze_a)
        return self.model.get_flat()

    def evaluate(
        self, arm: Arm, flat: np.ndarray, answers: bool = False, clients: bool = False
    ) -> Evaluated:
        """Metrics of a global adapter on the held-out split and its views; with answers, also
        greedy generations for the first generate_samples held-out prompts, scored; with
        clients, every client's held-out shard (evaluate.evaluate_task)."""
        self.use(arm)
        self.model.set_flat(flat)
        return evaluate_task(self, answers, clients)
