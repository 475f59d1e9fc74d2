"""Token Recall (the paper's metric) per token policy, on the synthetic instruction task.

    .venv/bin/python -m studies.token_recall --out docs/results/token-recall.json

In the synthetic instructions the response is "The answer is <word>." and only the class word
carries the example's information, so the informative target tokens are known: those of the
answer words. Each policy (Fed-FSTQ's Fisher proxy, as the paper scores it and aligned with
the loss term it masks (`align`), the loss control, the random control)
trains the same client-rounds from the same initial adapter with a TokenRecall meter around its
hook; recall is the share of informative target tokens its masked steps keep, keep_share the
share of all target tokens kept (what random's recall is in expectation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulator import seeds
from simulator.methods.registry import policy
from simulator.methods.tokens import TokenRecall
from simulator.scenario import load_scenario
from simulator.training.data import ANSWER_WORDS
from simulator.training.local import train_local
from simulator.training.task import RealTask

# row name: (policy, extra token options); fisher-aligned scores target i by input i − 1
POLICIES = {
    "fisher": ("fisher", {}),
    "fisher-aligned": ("fisher", {"align": True}),
    "loss": ("loss", {}),
    "random": ("random", {}),
}
SCENARIO = "scenarios/llm-quickstart.toml"
DEFAULTS = ("training.local.steps=10",)  # enough steps for several masked ones per round


def informative_ids(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """True for the token ids of the answer words (with and without a leading space)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for word in ANSWER_WORDS:
        for text in (word, f" {word}"):
            mask[tokenizer(text, add_special_tokens=False)["input_ids"]] = True
    return mask


def measure(
    task: RealTask, clients: list[int], keep: float, refresh: int
) -> dict[str, dict[str, float]]:
    """Recall and keep share of each policy over the same client-rounds (round 1)."""
    informative = informative_ids(task.tokenizer, task.vocab_size)
    start = task.model.get_flat()
    out = {}
    for name, (kind, extra) in POLICIES.items():
        counts = np.zeros(4)
        for client in clients:
            task.model.set_flat(start)
            hook = policy(kind, {"keep": keep, "refresh": refresh, **extra}).hook(
                task.vocab_size, task.special_ids, client
            )
            meter = TokenRecall(hook, informative)
            seed = seeds.seed_sequence(task.seed, "training", client, 1)
            indices = task.parts[client]
            train_local(task.model, task.tokens, indices, task.spec.local, task.flops, seed, meter)
            counts += (meter.kept, meter.total, meter.kept_all, meter.total_all)
        kept, total, kept_all, total_all = counts
        out[name] = {
            "recall": kept / total,
            "keep_share": kept_all / total_all,
            "informative_tokens": int(total),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=SCENARIO, help="a synthetic instruction scenario")
    parser.add_argument("--set", action="append", default=list(DEFAULTS), help="KEY=VALUE")
    parser.add_argument("--clients", type=int, default=4, help="client-rounds per policy")
    parser.add_argument("--keep", type=float, default=0.5, help="the keep ratio r_tok")
    parser.add_argument("--refresh", type=int, default=3, help="refresh period H")
    parser.add_argument("--out", required=True, help="JSON file of the results")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario, args.set)
    task = RealTask(scenario)
    results = {
        "scenario": args.scenario,
        "overrides": args.set,
        "keep": args.keep,
        "refresh": args.refresh,
        "clients": args.clients,
        "policies": measure(task, list(range(args.clients)), args.keep, args.refresh),
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for name, row in results["policies"].items():
        print(f"{name:14s} recall {row['recall']:.3f}  keep share {row['keep_share']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
