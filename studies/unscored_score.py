"""What score a position gets when its token id has not been scored yet this round.

    .venv/bin/python -m studies.unscored_score --out docs/results/unscored-score.json

Fed-FSTQ ranks a masked step's targets by their id's score EMA, but most response ids of a
real data set have not been held by a refresh batch of the round yet. This measures, on the
LLM study's PubMedQA client-rounds (its S and H), how much of the true per-token score of a
refresh batch a mask built from the scores known just before that refresh keeps, for each
candidate score of an unscored id: 0 (Algorithm 1's reset value ĝ ← 0: unscored ids last),
the median or the mean of the scored ids' EMAs, +∞ (unscored first); against the oracle mask
(the batch's own top scores) and a random mask. Its result chose the mean that
simulator/methods/tokens.py uses.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from simulator import seeds
from simulator.methods.registry import policy
from simulator.methods.tokens import ScheduledHook, _eligible, top_tokens
from simulator.scenario import load_scenario
from simulator.training.local import Batch, train_local
from simulator.training.task import RealTask

SCENARIO = "scenarios/llm-pubmedqa.toml"
CANDIDATES = {
    "zero": lambda scored: 0.0,
    "median": lambda scored: float(scored.median()),
    "mean": lambda scored: float(scored.mean()),
    "inf": lambda scored: math.inf,
}


class Meter:
    """A hook that, at every refresh after the first, ranks the batch by the scores known
    before it under each candidate and counts the share of the batch's true score each
    candidate's mask keeps (and the oracle's and a random mask's)."""

    def __init__(self, hook: ScheduledHook) -> None:
        self.hook = hook
        self.kept: dict[str, list[float]] = {name: [] for name in [*CANDIDATES, "oracle", "random"]}
        self.unscored: list[float] = []
        self.generator = torch.Generator().manual_seed(0)

    def wants_scores(self, step: int) -> bool:
        return self.hook.wants_scores(step)

    def weights(self, step: int, batch: Batch) -> torch.Tensor | None:
        return self.hook.weights(step, batch)

    def observe(
        self, step: int, batch: Batch, token_loss: torch.Tensor, token_grad_sq: torch.Tensor
    ) -> None:
        truth = (token_grad_sq if self.hook.score == "fisher" else token_loss).float().cpu()
        ids, eligible = batch.input_ids.cpu(), _eligible(batch).long()
        scored = self.hook.ema[~torch.isnan(self.hook.ema)]
        if len(scored):
            total = float((truth * eligible).sum())
            known = ~torch.isnan(self.hook.ema[ids])
            self.unscored.append(float((~known & eligible.bool()).sum() / eligible.sum()))
            rows = {"oracle": truth, "random": torch.rand(ids.shape, generator=self.generator)}
            for name, prior in CANDIDATES.items():
                rows[name] = self.hook.ema[ids].nan_to_num(prior(scored))
            for name, scores in rows.items():
                mask = top_tokens(
                    scores, ids, eligible, self.hook.special, self.hook.options.keep, self.generator
                )
                self.kept[name].append(float((mask * truth * eligible).sum()) / total)
        self.hook.observe(step, batch, token_loss, token_grad_sq)


def measure(
    task: RealTask, clients: list[int], score: str, options: dict[str, object]
) -> dict[str, float]:
    """Mean kept share of the true score per candidate over the clients' round-1 refreshes."""
    start = task.model.get_flat()
    meters = []
    for client in clients:
        task.model.set_flat(start)
        meter = Meter(policy(score, options).hook(task.vocab_size, task.special_ids, client))
        seed = seeds.seed_sequence(task.seed, "training", client, 1)
        train_local(
            task.model, task.tokens, task.parts[client], task.spec.local, task.flops, seed, meter
        )
        meters.append(meter)
    out = {
        name: float(np.mean([v for m in meters for v in m.kept[name]])) for name in meters[0].kept
    }
    out["unscored_targets"] = float(np.mean([v for m in meters for v in m.unscored]))
    out["refreshes"] = sum(len(m.unscored) for m in meters)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/pubmedqa/ori_pqal.json")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    scenario = load_scenario(SCENARIO, [f"training.data.path={Path(args.data).resolve()}"])
    fed = next(m for m in scenario.methods if m.token_policy == "fisher")
    task = RealTask(scenario)
    clients = list(range(args.clients))
    result = {
        "scenario": SCENARIO,
        "token_options": fed.token_options,
        **{score: measure(task, clients, score, fed.token_options) for score in ("fisher", "loss")},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
