"""Straggler strategies on hetero-lte: round-duration distribution and time to the target.

Runs scenarios/hetero-lte.toml (surrogate: 100 Jetsons, 10 per round, p_drop 0.1, 20% of
uplinks at 0.5-2 Mbps) for its FedAvg and Fed-FSTQ arms under sync, a 30-minute deadline, a
deadline at the 80th percentile of planned finishes, 30% over-selection and FedBuff (10 in
flight, an update every 5, staleness bound 10; 100 updates, about the client updates of 50
synchronous rounds). A FedBuff "round" is one server update of 5 client updates, so its
durations are not comparable to a synchronous round of 10; time and uplink bytes to the
target accuracy are. Simulated seconds only: no timing of the host. Not a test: it prints a
table and writes bench/results/strategies.json.

    .venv/bin/python bench/strategies.py
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import numpy as np
from common import save

from simulator.experiment import run_scenario
from simulator.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "hetero-lte.toml"
ARMS = ["fedavg", "fed-fstq"]
STRATEGIES = {
    "sync": [],
    "deadline-1800s": ["strategy=deadline", "deadline_s=1800"],
    "deadline-p80": ["strategy=deadline", "percentile=80"],
    "overselect-0.3": ["strategy=overselect", "epsilon=0.3"],
    "fedbuff-C10-K5": [
        "strategy=fedbuff",
        "concurrency=10",
        "buffer_size=5",
        "max_staleness=10",
        "rounds=100",
    ],
}


def _arm_result(folder: Path) -> dict:
    with open(folder / "rounds.csv", newline="") as fh:
        durations = np.array([float(r["duration_s"]) for r in csv.DictReader(fh)])
    summary = json.loads((folder / "summary.json").read_text())
    target = summary["targets"][0]
    return {
        "rounds": len(durations),
        "round_s_p50": round(float(np.percentile(durations, 50)), 1),
        "round_s_p90": round(float(np.percentile(durations, 90)), 1),
        "round_s_max": round(float(durations.max()), 1),
        "target": target["target"],
        "time_to_target_s": target["time_s"] and round(target["time_s"], 1),
        "uplink_gb_to_target": target["uplink_bytes"] and round(target["uplink_bytes"] / 1e9, 2),
        "final_accuracy": round(summary["final"]["accuracy"], 4),
    }


def main() -> dict:
    """Run every strategy, print the table, write the JSON."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in STRATEGIES.items():
            scenario = load_scenario(SCENARIO, [f"server.{o}" for o in overrides])
            folders = run_scenario(scenario, Path(tmp) / name, arms=ARMS, progress=False)
            results[name] = {folder.name: _arm_result(folder) for folder in folders}
    header = f"{'strategy':<16}{'arm':<10}{'rounds':>7}{'p50 s':>9}{'p90 s':>9}{'max s':>9}"
    print(header + f"{'to target h':>13}{'uplink GB':>11}")
    for name, arms in results.items():
        for arm, r in arms.items():
            hours = "—" if r["time_to_target_s"] is None else f"{r['time_to_target_s'] / 3600:.1f}"
            gb = "—" if r["uplink_gb_to_target"] is None else f"{r['uplink_gb_to_target']:.1f}"
            print(
                f"{name:<16}{arm:<10}{r['rounds']:>7}{r['round_s_p50']:>9.0f}"
                f"{r['round_s_p90']:>9.0f}{r['round_s_max']:>9.0f}{hours:>13}{gb:>11}"
            )
    result = {
        "benchmark": "strategies_hetero_lte",
        "command": "python bench/strategies.py",
        "scenario": "scenarios/hetero-lte.toml",
        "strategies": {name: overrides for name, overrides in STRATEGIES.items()},
        "results": results,
    }
    save("strategies", result)
    return result


if __name__ == "__main__":
    main()
