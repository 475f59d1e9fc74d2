"""Engine throughput: surrogate client-rounds simulated per host second, with full recording.

100,000 clients, 1,000 per round, 100 rounds (100,000 client-rounds), straggler-tail uplinks,
Bernoulli dropout, every row written to a real run directory. Reports client-rounds/s (median
of 3 runs, each building the world) and the process's peak resident memory. Not a test: it
prints a table and writes bench/results/engine.json.

    .venv/bin/python bench/engine.py
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import save

from simulator.experiment import run_scenario
from simulator.scenario import scenario_from_dict

TARGET_CLIENT_ROUNDS_PER_S = 50_000
TARGET_PEAK_MB = 1024
REPEATS = 3

SCENARIO = {
    "name": "bench-engine",
    "seed": 0,
    "population": {
        "clients": 100_000,
        "per_round": 1_000,
        "mix": {"low_phone": 0.2, "mid_phone": 0.4, "flagship_phone": 0.3, "laptop": 0.1},
    },
    "network": {
        "uplink": {"kind": "straggler_tail"},
        "downlink": {"kind": "ratio", "ratio": 4.0},
        "latency_ms": 40.0,
    },
    "availability": {"kind": "bernoulli", "p_drop": 0.1},
    "training": {"mode": "surrogate", "downlink_mb": 0.15},
    "server": {"rounds": 100},
    "evaluation": {"targets": [0.8]},
    "methods": [{"name": "fed-fstq", "payload_mb": 0.03, "compute_tflop": 1.0}],
}


def main() -> dict:
    """Run the benchmark once and return its result."""
    scenario = scenario_from_dict(SCENARIO, "bench/engine.py", base=Path.cwd())
    client_rounds = scenario.population.per_round * scenario.server.rounds
    timings = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_scenario(scenario, Path(tmp), progress=False)
            timings.append(time.perf_counter() - start)
            rows = len((Path(tmp) / "fed-fstq" / "clients.csv").read_text().splitlines()) - 1
        assert rows == client_rounds
    seconds = statistics.median(timings)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = client_rounds / seconds
    result = {
        "benchmark": "engine_surrogate_throughput",
        "command": "python bench/engine.py",
        "clients": scenario.population.clients,
        "per_round": scenario.population.per_round,
        "rounds": scenario.server.rounds,
        "client_rounds": client_rounds,
        "host_seconds_median": round(seconds, 3),
        "host_seconds_all": [round(t, 3) for t in timings],
        "client_rounds_per_s": round(rate),
        "peak_rss_mb": round(peak_mb, 1),
        "target_client_rounds_per_s": TARGET_CLIENT_ROUNDS_PER_S,
        "target_peak_mb": TARGET_PEAK_MB,
        "met": rate >= TARGET_CLIENT_ROUNDS_PER_S and peak_mb < TARGET_PEAK_MB,
    }
    print(f"{'client-rounds':>14} {'host s':>8} {'client-rounds/s':>16} {'peak RSS MB':>12} met")
    print(f"{client_rounds:>14} {seconds:>8.2f} {rate:>16.0f} {peak_mb:>12.1f} {result['met']}")
    save("engine", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
