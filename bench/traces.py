"""Benchmark: Trace.transfer_time calls per second on a real Mahimahi uplink, and trace load time.

Run from anywhere: `python bench/traces.py`. The traces are the ones shipped in traces/.
Writes bench/results/traces.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import best_of, save

from simulator.network.traces import load_trace

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "traces"
TRACE = TRACES / "mahimahi" / "ATT-LTE-driving.up"
CALLS = 200_000
TARGET = 200_000
REPEATS = 3
HORIZON_S = 3600.0


def main() -> None:
    trace = load_trace(TRACE)
    rng = np.random.default_rng(0)
    starts = rng.uniform(0.0, HORIZON_S, CALLS).tolist()  # more than three loops of the trace
    sizes = np.exp(rng.uniform(np.log(1e4), np.log(1e7), CALLS)).tolist()  # 10 kB to 10 MB
    transfer_time = trace.transfer_time

    def calls() -> None:
        for nbytes, start in zip(sizes, starts, strict=True):
            transfer_time(nbytes, start)

    calls_per_s = CALLS / best_of(REPEATS, calls)

    mahimahi = [p for p in (TRACES / "mahimahi").rglob("*") if p.suffix in (".up", ".down", ".pps")]
    largest = max(mahimahi, key=lambda p: p.stat().st_size)
    load_s = best_of(REPEATS, lambda: load_trace(largest))
    lines = sum(1 for _ in largest.open())

    result = {
        "benchmark": "trace_transfer_time",
        "calls_per_s": round(calls_per_s),
        "trace": TRACE.relative_to(ROOT).as_posix(),
        "calls": CALLS,
        "start_horizon_s": HORIZON_S,
        "command": "python bench/traces.py",
        "target_calls_per_s": TARGET,
        "met": calls_per_s >= TARGET,
        "largest_mahimahi": largest.relative_to(ROOT).as_posix(),
        "largest_mahimahi_lines": lines,
        "largest_mahimahi_load_s": round(load_s, 4),
    }
    rows = [
        ("trace", f"{TRACE.name} ({trace.duration_s:.1f} s period, looped over {HORIZON_S:g} s)"),
        ("transfer_time", f"{calls_per_s:,.0f} calls/s (best of {REPEATS} x {CALLS:,})"),
        ("target", f"{TARGET:,} calls/s: {'met' if result['met'] else 'NOT met'}"),
        ("load", f"{largest.name}, {lines:,} lines: {1000 * load_s:.1f} ms"),
    ]
    for label, text in rows:
        print(f"{label:<14} {text}")
    print(f"wrote {save('traces', result).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
