"""Real-training benchmarks: local-training tokens/s, simulator overhead, memory vs clients.

1. Tokens/s of local training, MiniLM + LoRA r = 8 (query, value) on the embedded task, at the
   quickstart's settings (batch 8, sequence 48) and at a larger batch (16 × 128).
2. The share of host time the quickstart spends outside forward/backward/optimizer (evaluation
   forward passes counted as forward), over the whole run, model loading included; target
   ≤ 10 %. Forward/backward/optimizer seconds come from the run's manifests
   (`host_seconds_math`), the total from a clock around the run.
3. Peak resident memory of a real-training run with 1,000 clients against 10 clients (same data,
   5 per round, 3 rounds; each in a fresh process); target: within 1.5×.
4. The floor, in the same minutes: the project's local steps (`train_local`) against a plain
   transformers + PEFT loop on the same batches (the quickstart's LoRA, AdamW and clipping at
   8 × 48, S = 30 steps, the same threads), paired runs with the first to run rotating; per-pair
   ratios project / plain, median and range. Target: <= 1.0.

Not a test: it prints a table and writes bench/results/training.json.

    .venv/bin/python bench/training.py [--pairs 5] [--floor-only]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from common import RESULTS, Floor, math_seconds, print_table, save, timed_local_steps

from simulator.scenario import load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
TARGET_OVERHEAD = 0.10
TARGET_MEMORY_RATIO = 1.5
TARGET_FLOOR = 1.0
STEPS = 30


def tokens_per_second() -> list[dict]:
    """Local-training throughput at two batch shapes."""
    rows = []
    for batch, length in ((8, 48), (16, 128)):
        scenario = load_scenario(
            QUICKSTART,
            [
                f"training.local.batch_size={batch}",
                f"training.local.seq_len={length}",
                f"training.local.steps={STEPS}",
                "training.data.words=[40, 120]",
            ],
        )
        seconds, stats = timed_local_steps(scenario, 400)
        rows.append(
            {
                "batch": batch,
                "seq_len": length,
                "steps": stats.steps,
                "host_s": round(seconds, 3),
                "tokens_per_s": round(stats.tokens / seconds),
                "positions_per_s": round(stats.positions / seconds),
                "ms_per_step": round(1000 * seconds / stats.steps, 1),
                "gflop_per_s": round(stats.work_flop / seconds / 1e9, 1),
            }
        )
    return rows


def overhead() -> dict:
    """Host-time share of the quickstart outside the model's math."""
    scenario = load_scenario(QUICKSTART)
    total, parts = math_seconds(scenario, QUICKSTART)
    inside = sum(parts.values())
    return {
        "host_s_total": round(total, 2),
        "host_s_math": {k: round(v, 2) for k, v in parts.items()},
        "overhead_share": round(1 - inside / total, 4),
        "overhead_share_without_evaluation": round(1 - (inside - parts["evaluation"]) / total, 4),
    }


MEMORY_CHILD = """
import json, sys, tempfile
from pathlib import Path
from simulator.experiment import run_scenario
from simulator.scenario import scenario_from_dict
raw = json.loads(sys.argv[1])
scenario = scenario_from_dict(raw, "bench/training.py", Path.cwd())
with tempfile.TemporaryDirectory() as tmp:
    run_scenario(scenario, Path(tmp), progress=False)
status = Path("/proc/self/status").read_text().splitlines()
print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024)
"""


def peak_memory_mb(clients: int) -> float:
    """Peak RSS (VmHWM) of a short real run with this many clients, in a fresh process.

    VmHWM, not getrusage: ru_maxrss survives exec and would report this process's peak.
    """
    raw = load_scenario(QUICKSTART).model_dump(mode="json")
    raw["population"].update(clients=clients, per_round=5)
    raw["server"]["rounds"] = 3
    raw["training"]["data"].update(samples=6000)
    raw["training"]["partition"].update(min_samples=2)
    raw["methods"] = raw["methods"][:1]
    scenario_from_dict(json.loads(json.dumps(raw)), "bench/training.py", ROOT)  # validate
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, json.dumps(raw)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return float(done.stdout.strip().splitlines()[-1])


def floor(pairs: int) -> dict:
    """The project's local steps against the plain loop (paired), printed."""
    scenario = load_scenario(
        QUICKSTART, [f"training.local.steps={STEPS}", "training.data.words=[40, 120]"]
    )
    torch.set_num_threads(scenario.training.threads)
    result = Floor(scenario).paired({}, pairs)
    print(
        f"MiniLM floor, {STEPS} steps at 8 x 48: project {result['s_per_step']['steps']} s/step, "
        f"plain {result['s_per_step']['plain']} s/step, ratio {result['ratio_median']['steps']} "
        f"(pairs {result['ratio_range']['steps']}; target <= {TARGET_FLOOR})"
    )
    return {**result, "target": TARGET_FLOOR}


def main(argv: list[str] | None = None) -> dict:
    """Run the measurements, print tables and write the JSON (--floor-only: update the floor of
    the JSON already there)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="pairs of the floor")
    parser.add_argument("--floor-only", action="store_true", help="only the floor")
    args = parser.parse_args(argv)
    command = " ".join(["python bench/training.py", *(argv or [])])
    if args.floor_only:
        path = RESULTS / "training.json"
        result = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        result["floor"] = {**floor(args.pairs), "command": command}
        save("training", result)
        return result
    throughput = tokens_per_second()
    print_table(
        throughput,
        {
            "batch": "batch",
            "seq_len": "seq",
            "ms_per_step": "ms/step",
            "tokens_per_s": "tokens/s",
            "gflop_per_s": "GFLOP/s",
        },
    )
    share = overhead()
    print(
        f"quickstart: {share['host_s_total']} s host, overhead share "
        f"{share['overhead_share']:.1%} (target <= {TARGET_OVERHEAD:.0%})"
    )
    memory = {n: round(peak_memory_mb(n), 1) for n in (10, 1000)}
    ratio = memory[1000] / memory[10]
    print(f"peak RSS: 10 clients {memory[10]} MB, 1,000 clients {memory[1000]} MB, x{ratio:.2f}")
    result = {
        "benchmark": "real_training",
        "command": "python bench/training.py",
        "local_training": throughput,
        "quickstart_overhead": share,
        "target_overhead_share": TARGET_OVERHEAD,
        "peak_rss_mb": {"clients_10": memory[10], "clients_1000": memory[1000]},
        "memory_ratio": round(ratio, 3),
        "floor": {**floor(args.pairs), "command": command},
        "target_memory_ratio": TARGET_MEMORY_RATIO,
        "met": share["overhead_share"] <= TARGET_OVERHEAD and ratio <= TARGET_MEMORY_RATIO,
        "peak_rss_mb_this_process": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
    }
    save("training", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
