"""Fed-FSTQ's token-selection overhead: counted FLOPs against measured host time, paired.

For MiniLM (quickstart) and SmolLM2 (llm-quickstart), one client's local steps at the
scenario's shapes run as FedAvg-LoRA (no token policy, no Fisher estimate) and as Fed-FSTQ's
training half (the Fisher token policy at the scenario's keep and refresh, plus the adapter's
diagonal Fisher EMA), from the same adapter and seed, in pairs whose order alternates (the
machine is shared: a pair's two runs see the same load). Overhead = Fed-FSTQ / FedAvg − 1, of
the counted work (simulator/training/flops.py) and of host seconds around the whole local
round (the hook's masks included). The table gives the counted overhead, the median measured
one and the measured range over pairs.

Not a test: it prints a table and writes bench/results/fisher.json.

    .venv/bin/python bench/fisher.py [--pairs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import print_table, save

from simulator.methods.registry import policy
from simulator.scenario import load_scenario
from simulator.training.local import train_local
from simulator.training.task import RealTask

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # name: (scenario, local steps)
    "minilm": (ROOT / "scenarios" / "quickstart.toml", 8),
    "smollm2": (ROOT / "scenarios" / "llm-quickstart.toml", 6),
}
RHO = 0.9


def paired(name: str, pairs: int) -> dict:
    """Counted and measured overhead of one model over `pairs` alternating pairs."""
    path, steps = MODELS[name]
    scenario = load_scenario(path, [f"training.local.steps={steps}"])
    fed = next(m for m in scenario.methods if m.token_policy == "fisher")
    task = RealTask(scenario)
    start = task.model.get_flat()
    indices = task.parts[0]

    def run(fstq: bool) -> tuple[float, float]:
        task.model.set_flat(start)
        hook = None
        if fstq:
            hook = policy("fisher", fed.token_options).hook(task.vocab_size, task.special_ids, 0)
        began = time.perf_counter()
        _, stats = train_local(
            task.model, task.tokens, indices, scenario.training.local, task.flops,
            np.random.SeedSequence(0), hook, RHO if fstq else None,
        )  # fmt: skip
        return time.perf_counter() - began, stats.work_flop

    run(False)  # warm-up
    measured, counted = [], 0.0
    for pair in range(pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        results = dict(zip(order, (run(fstq) for fstq in order), strict=True))
        measured.append(results[True][0] / results[False][0] - 1)
        counted = results[True][1] / results[False][1] - 1
    median = statistics.median(measured)
    return {
        "model": name,
        "batch": scenario.training.local.batch_size,
        "seq_len": scenario.training.local.seq_len,
        "steps": steps,
        "refresh": fed.token_options.get("refresh"),
        "pairs": pairs,
        "counted_pct": round(100 * counted, 2),
        "measured_pct": round(100 * median, 2),
        "measured_min_pct": round(100 * min(measured), 2),
        "measured_max_pct": round(100 * max(measured), 2),
        "gap_pp": round(100 * (counted - median), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = [paired(name, args.pairs) for name in args.models]
    print_table(
        rows,
        {
            "model": "model",
            "batch": "B",
            "seq_len": "T",
            "steps": "S",
            "refresh": "H",
            "counted_pct": "counted %",
            "measured_pct": "measured %",
            "measured_min_pct": "min %",
            "measured_max_pct": "max %",
            "gap_pp": "gap pp",
        },
    )
    command = " ".join(["python bench/fisher.py", f"--pairs {args.pairs}"])
    if args.models != list(MODELS):
        command += " --models " + " ".join(args.models)
    print(f"wrote {save('fisher', {'rows': rows, 'threads': 2, 'command': command})}")


if __name__ == "__main__":
    main()
