"""What every arm of a real run shares and no client owns, built once per process.

`RealTask` holds the one base model with its LoRA adapter, the data set tokenised once, the
partition and the FLOP model; clients train on it (client.py) and the server evaluates its
global state on it (`evaluate`).
"""

from __future__ import annotations

import numpy as np
import torch

from simulator.scenario import PubMedQAData, Scenario
from simulator.training.client import Arm
from simulator.training.data import load_data, tokenize
from simulator.training.evaluate import (
    answer_set,
    candidate_answers,
    evaluate,
    generate,
    generation_metrics,
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
        self.parts = partition(
            spec.partition, self.data, scenario.population.clients, scenario.seed
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
        self, arm: Arm, flat: np.ndarray, answers: bool = False
    ) -> tuple[dict[str, float], list[dict[str, str]]]:
        """Metrics of a global adapter on the held-out split; with answers, also greedy
        generations for the first generate_samples held-out prompts, scored, and returned."""
        self.use(arm)
        self.model.set_flat(flat)
        batch = self.spec.eval_batch_size
        metrics = evaluate(self.model, self.tokens, self.data.validation, batch, self.answers)
        if not answers:
            return metrics, []
        spec = self.evaluation
        rows = self.data.validation[: spec.generate_samples]
        said = generate(self.model, self.tokenizer, self.tokens, rows, spec.max_new_tokens, batch)
        decisions = isinstance(self.spec.data, PubMedQAData)
        metrics |= generation_metrics(said, self.data, rows, decisions)
        assert self.data.prompts is not None
        samples = [
            {"prompt": self.data.prompts[i], "reference": self.data.texts[i], "answer": answer}
            for i, answer in zip(rows.tolist(), said, strict=True)
        ]
        return metrics, samples
