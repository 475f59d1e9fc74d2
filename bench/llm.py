"""LLM-mode benchmarks: the embedded SmolLM2-135M-Instruct on this host.

1. Load time: cold (the GGUF file dequantised and converted into a fresh cache folder) and
   cached (the converted safetensors folder), each in a fresh process, LoRA wrap included.
2. Host seconds per local step, LoRA r = 8 on q/k/v/o, AdamW, at batch 4 × 128 and 4 × 256
   (the synthetic instructions, long enough to fill every position).
3. The share of host time a short LLM run (llm-quickstart, 1 round, both arms) spends outside
   forward/backward/optimizer and evaluation (generation included); target <= 5 %.

Not a test: it prints a table and writes bench/results/llm.json.

    .venv/bin/python bench/llm.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import math_seconds, print_table, save, timed_local_steps

from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "llm-quickstart.toml"
TARGET_OVERHEAD = 0.05
STEPS = 6

LOAD_CHILD = """
import json, sys, time
began = time.perf_counter()
from simulator.scenario import load_scenario
from simulator.training.models import load_model, load_tokenizer
spec = load_scenario(sys.argv[1]).training
tokenizer = load_tokenizer(spec)
load_model(spec, 0, tokenizer.pad_token_id, seed=0)
print(json.dumps({"load_s": time.perf_counter() - began}))
"""


def load_seconds(cache: str | None) -> float:
    """Seconds from a fresh process's first import to a LoRA-wrapped model (cache: where)."""
    env = None
    if cache is not None:
        import os

        env = {**os.environ, "FSTQ_SIM_CACHE": cache}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_CHILD, str(SCENARIO)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["load_s"]


def step_seconds() -> list[dict]:
    """Host seconds per local step at two batch shapes."""
    rows = []
    for batch, length in ((4, 128), (4, 256)):
        scenario = load_scenario(
            SCENARIO,
            [
                f"training.local.batch_size={batch}",
                f"training.local.seq_len={length}",
                f"training.local.steps={STEPS}",
                "training.data.words=[150, 220]",
            ],
        )
        seconds, stats = timed_local_steps(scenario, 64)
        rows.append(
            {
                "batch": batch,
                "seq_len": length,
                "steps": stats.steps,
                "s_per_step": round(seconds / stats.steps, 2),
                "tokens_per_s": round(stats.tokens / seconds),
                "gflop_per_s": round(stats.work_flop / seconds / 1e9, 1),
            }
        )
    return rows


def overhead() -> dict:
    """Host-time share of a one-round LLM run outside the model's math."""
    scenario = load_scenario(SCENARIO, ["server.rounds=1"])
    total, parts = math_seconds(scenario, SCENARIO)
    inside = sum(parts.values())
    return {
        "host_s_total": round(total, 2),
        "host_s_math": {k: round(v, 2) for k, v in parts.items()},
        "overhead_share": round(1 - inside / total, 4),
    }


def main() -> dict:
    """Run the measurements, print them and write the JSON."""
    with tempfile.TemporaryDirectory() as fresh:
        cold = load_seconds(fresh)
    cached = load_seconds(None)
    print(f"SmolLM2 load: cold (convert the GGUF) {cold:.1f} s, cached {cached:.1f} s")
    steps = step_seconds()
    print_table(
        steps,
        {"batch": "batch", "seq_len": "seq", "s_per_step": "s/step", "tokens_per_s": "tokens/s"},
    )
    share = overhead()
    print(
        f"llm-quickstart, 1 round: {share['host_s_total']} s host, overhead share "
        f"{share['overhead_share']:.1%} (target <= {TARGET_OVERHEAD:.0%})"
    )
    result = {
        "benchmark": "llm",
        "command": "python bench/llm.py",
        "load_s": {"cold": round(cold, 1), "cached": round(cached, 1)},
        "local_training": steps,
        "overhead": share,
        "target_overhead_share": TARGET_OVERHEAD,
        "met": share["overhead_share"] <= TARGET_OVERHEAD,
    }
    save("llm", result)
    return result


if __name__ == "__main__":
    main()
