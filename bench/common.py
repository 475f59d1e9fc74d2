"""What every benchmark shares: where results go, what host produced them, how long it took."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
# A script's wall time counts from when it imports this module (imports before it are not counted).
STARTED = time.perf_counter()


def host() -> dict[str, Any]:
    """The machine a figure was measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (with the host and the script's wall time) atomically,
    through a temporary name of its own, so benchmarks run side by side never share one."""
    from simulator.recorder import write_json_atomic

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    wall_s = round(time.perf_counter() - STARTED, 1)
    write_json_atomic(path, {**result, "host": host(), "wall_s": wall_s})
    return path


def print_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """Print rows as a right-aligned table: columns maps a row key to its header."""
    widths = {
        key: max(len(header), *(len(str(row[key])) for row in rows))
        for key, header in columns.items()
    }
    print(" ".join(f"{header:>{widths[key]}}" for key, header in columns.items()))
    for row in rows:
        print(" ".join(f"{row[key]!s:>{widths[key]}}" for key in columns))


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """Fastest of several runs in host seconds: the least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def math_seconds(scenario: Any, scenario_file: Path) -> tuple[float, dict[str, float]]:
    """Run a scenario into a temporary folder: (host seconds of the whole run, model loading
    included; host seconds of the model's math by part, summed over arms from the manifests)."""
    import tempfile

    from simulator.experiment import prepare_out, run_scenario

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        prepare_out(out, scenario_file, scenario)
        start = time.perf_counter()
        folders = run_scenario(scenario, out, progress=False)
        total = time.perf_counter() - start
        parts: dict[str, float] = {}
        for folder in folders:
            math = json.loads((folder / "manifest.json").read_text())["host_seconds_math"]
            for name, seconds in math.items():
                parts[name] = parts.get(name, 0.0) + seconds
    return total, parts


def timed_local_steps(scenario: Any, examples: int) -> tuple[float, Any]:
    """Host seconds and LocalStats of one client's local steps (the scenario's training.local)
    on its first `examples` training examples, from the seeded initial adapter."""
    import numpy as np

    from simulator.training.local import train_local
    from simulator.training.task import RealTask

    task = RealTask(scenario)
    indices = task.data.train[:examples]
    spec = scenario.training.local
    start = time.perf_counter()
    _, stats = train_local(
        task.model, task.tokens, indices, spec, task.flops, np.random.SeedSequence(0)
    )
    return time.perf_counter() - start, stats
