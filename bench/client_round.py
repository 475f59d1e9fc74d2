"""One LLM client-round on the embedded SmolLM2: host seconds, for a same-minute A/B between
checkouts (tools/ab_bench.py).

The client-round is `client_update` of llm-quickstart's first arm (FedAvg-LoRA): S = 10 local
steps at 4 rows of ~128 tokens (the synthetic instructions at the words below), the delta
encoded into its message. One warm-up, then `--repeats` timed runs in this process.

    python bench/client_round.py [--repeats 3] [--set training.dtype=bfloat16]

Writes bench/results/client_round.json (`seconds`, `seconds_median`). It uses only interfaces
that older checkouts have too (load_scenario, RealTask, Arm, Job, client_update), so it can be
copied into an older checkout to compare against it:

    python tools/ab_bench.py --before ../before --script bench/client_round.py \
        --field seconds_median --after-args="--set training.dtype=bfloat16"
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from common import save

from simulator.scenario import load_scenario
from simulator.training.client import Arm, Job, client_update
from simulator.training.task import RealTask

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "llm-quickstart.toml"
SHAPE = (
    "training.local.steps=10",
    "training.local.batch_size=4",
    "training.local.seq_len=136",
    "training.data.words=[64, 72]",
)


def main(argv: list[str]) -> dict:
    """Time the client-round and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="a scenario override")
    args = parser.parse_args(argv)
    scenario = load_scenario(SCENARIO, [*SHAPE, *args.set])
    torch.set_num_threads(scenario.training.threads)
    task = RealTask(scenario)
    arm = Arm.of(scenario.methods[0])
    job = Job(0, 0, task.initial_flat(arm))
    client_update(task, arm, job)  # warm-up: first-call allocations
    seconds = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        client_update(task, arm, job)
        seconds.append(time.perf_counter() - began)
    result = {
        "benchmark": "client_round",
        "command": " ".join(["python bench/client_round.py", *argv]),
        "overrides": [*SHAPE, *args.set],
        "seconds": [round(s, 3) for s in seconds],
        "seconds_median": round(statistics.median(seconds), 3),
    }
    save("client_round", result)
    print(f"client-round: median {result['seconds_median']} s of {result['seconds']}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
