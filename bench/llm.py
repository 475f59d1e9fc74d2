"""LLM-mode benchmarks: the embedded SmolLM2-135M-Instruct on this host.

1. Load time: cold (the GGUF file dequantised and converted into a fresh cache folder) and
   cached (the converted safetensors folder), each in a fresh process, LoRA wrap included.
2. The floor, side by side in the same minutes: S = 10 local steps at 4 × 128 (the synthetic
   instructions, long enough to fill every position) by the project (`train_local`, and a whole
   client-round `client_update`, encode included) against a plain transformers + PEFT loop on
   the same batches (LoRA r = 8 on q/k/v/o, AdamW, clipping at 1.0, the same 2 threads; labels
   with -100 off the targets, full logits, as a user would write it). Paired runs in rotating
   order, per-pair ratios project / plain with their median and range, in fp32 and in bf16 (CPU
   autocast on both sides). Target: the project's fp32 local step <= 1.05x the plain fp32 loop.
3. One round of llm-quickstart at its own settings, in a fresh process: host seconds, the share
   spent in evaluation (target <= 25 %), the share outside the model's math, peak resident
   memory (VmHWM; target <= 2.5 GB).
4. bf16 quality: the quickstart's held-out NLL after each round in bf16 and in fp32 (first arm,
   fewer rounds with --rounds), and the largest difference.

Not a test: it prints tables and writes bench/results/llm.json.

    .venv/bin/python bench/llm.py [--pairs 3] [--steps 10] [--rounds 3] [--skip-load]
                                  [--floor-only]

The JSON is rewritten after each stage, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import print_table, save

from simulator import seeds
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "llm-quickstart.toml"
TARGET_RATIO = 1.05
TARGET_EVAL_SHARE = 0.25
TARGET_PEAK_MB = 2500
TARGET_OVERHEAD = 0.05  # issue 11
TOLERANCE_BF16_NLL = 0.05  # nats: the bf16 held-out NLL within this of fp32's, every round
SHAPE = {"batch_size": 4, "seq_len": 128, "steps": 10}

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

RUN_CHILD = """
import csv, json, sys, tempfile, time
from pathlib import Path
from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import load_scenario
sets = json.loads(sys.argv[2])
scenario = load_scenario(sys.argv[1], sets)
if sys.argv[3] == "first":
    scenario = scenario.model_copy(update={"methods": scenario.methods[:1]})
with tempfile.TemporaryDirectory() as tmp:
    prepare_out(Path(tmp), Path(sys.argv[1]), scenario)
    began = time.perf_counter()
    folders = run_scenario(scenario, Path(tmp), progress=False)
    total = time.perf_counter() - began
    parts, evals = {}, {}
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text())
        for name, seconds in manifest["host_seconds_math"].items():
            parts[name] = parts.get(name, 0.0) + seconds
        with (folder / "evals.csv").open() as rows:
            evals[folder.name] = [r for r in csv.DictReader(rows)]
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
print(json.dumps({"total_s": total, "parts": parts, "evals": evals, "peak_rss_mb": peak}))
"""


def child(code: str, *args: str, cache: str | None = None) -> dict:
    """Run code in a fresh interpreter; the JSON of its last output line."""
    env = {**os.environ, "FSTQ_SIM_CACHE": cache} if cache else None
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


class PlainLoop:
    """The floor: a LoRA fine-tuning loop written directly against transformers and PEFT."""

    def __init__(self, folder: str, bf16: bool, lr: float) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        )
        self.model = get_peft_model(base, lora)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.initial = [p.detach().clone() for p in self.params]
        self.bf16 = bf16
        self.lr = lr

    def run(self, batches: list) -> float:
        """Train on the batches from the initial adapter; the last loss."""
        with torch.no_grad():
            for param, start in zip(self.params, self.initial, strict=True):
                param.copy_(start)
        optimizer = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=0.0)
        self.model.train()
        for batch in batches:
            labels = batch.input_ids.masked_fill(batch.targets == 0, -100)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels
                )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return float(out.loss.detach())


def side_by_side(dtype: str, pairs: int) -> dict:
    """Paired host seconds of S steps: project local steps, project client-round, plain loop."""
    from simulator.training.client import Arm, Job, client_update
    from simulator.training.local import _batches, train_local
    from simulator.training.models import resolve_model
    from simulator.training.task import RealTask

    sets = [f"training.local.{k}={v}" for k, v in SHAPE.items()]
    sets += ["training.data.words=[150, 220]", f"training.dtype={dtype}"]
    scenario = load_scenario(SCENARIO, sets)
    task = RealTask(scenario)
    arm = Arm.of(scenario.methods[0])
    initial = task.initial_flat(arm)
    local = scenario.training.local
    rows = task.parts[0]
    seed = seeds.seed_sequence(task.seed, "training", 0, 0)
    batches = _batches(
        task.tokens, rows, local.batch_size, local.steps, np.random.default_rng(seed)
    )
    plain = PlainLoop(resolve_model(scenario.training.model), dtype == "bfloat16", local.lr)

    def project_steps() -> None:
        task.model.set_flat(initial)
        train_local(task.model, task.tokens, rows, local, task.flops, seed)

    def project_round() -> None:
        client_update(task, arm, Job(0, 0, initial))

    runs = {"plain": lambda: plain.run(batches), "steps": project_steps, "round": project_round}
    plain.run(batches[:1])  # warm both (first-call allocations)
    project_steps()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for pair in range(pairs):
        names = list(runs)
        for name in names[pair % 3 :] + names[: pair % 3]:  # rotate who goes first
            began = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - began)
    ratios = {
        name: [a / b for a, b in zip(seconds[name], seconds["plain"], strict=True)]
        for name in ("steps", "round")
    }
    widths = [int(b.attention_mask.sum(1).max()) for b in batches]
    return {
        "dtype": dtype,
        "steps": local.steps,
        "batch": local.batch_size,
        "widths": widths,
        "seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
        "s_per_step": {k: round(statistics.median(v) / local.steps, 3) for k, v in seconds.items()},
        "ratio_median": {k: round(statistics.median(v), 3) for k, v in ratios.items()},
        "ratio_range": {k: [round(min(v), 3), round(max(v), 3)] for k, v in ratios.items()},
    }


def quickstart(sets: list[str], arms: str) -> dict:
    """One llm-quickstart run in a fresh process (host seconds, math parts, evals, peak RSS)."""
    return child(RUN_CHILD, str(SCENARIO), json.dumps(sets), arms)


def nll_by_round(run: dict) -> list[float]:
    """The first arm's held-out NLL after each evaluated round."""
    (rows,) = list(run["evals"].values())[:1]
    return [float(r["value"]) for r in rows if r["metric"] == "nll"]


def main(argv: list[str] | None = None) -> dict:
    """Run the measurements, print them and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=SHAPE["steps"], help="S of the side by side")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the bf16 quality check")
    parser.add_argument("--skip-load", action="store_true", help="skip the load-time figures")
    parser.add_argument("--floor-only", action="store_true", help="only the side by side")
    args = parser.parse_args(argv)
    torch.set_num_threads(load_scenario(SCENARIO).training.threads)
    SHAPE["steps"] = args.steps
    command = " ".join(["python bench/llm.py", *(argv or [])])
    result: dict = {
        "benchmark": "llm",
        "command": command,
        "load_average": {"start": round(os.getloadavg()[0], 1)},
        "target_overhead_share": TARGET_OVERHEAD,
        "targets": {
            "bf16_nll_diff": TOLERANCE_BF16_NLL,
            "ratio": TARGET_RATIO,
            "evaluation_share": TARGET_EVAL_SHARE,
            "peak_rss_mb": TARGET_PEAK_MB,
        },
    }
    stages = [("side_by_side", floor)]
    if not args.skip_load:
        stages.insert(0, ("load_s", load_times))
    if not args.floor_only:
        stages += [("quickstart_one_round", one_round), ("bf16_quality", bf16_quality)]
    for name, stage in stages:
        result[name] = stage(args)
        result["load_average"]["end"] = round(os.getloadavg()[0], 1)
        save("llm", result)  # a long run keeps every stage it finished
    if "side_by_side" in result:
        fp32, bf16 = result["side_by_side"]
        ratio = statistics.median(bf16["seconds"]["steps"]) / statistics.median(
            fp32["seconds"]["plain"]
        )
        result["bf16_vs_plain_fp32"] = round(ratio, 3)
    save("llm", result)
    return result


def load_times(args: argparse.Namespace) -> dict:
    """Cold and cached load seconds, each in a fresh process."""
    with tempfile.TemporaryDirectory() as fresh:
        cold = child(LOAD_CHILD, str(SCENARIO), cache=fresh)["load_s"]
    cached = child(LOAD_CHILD, str(SCENARIO))["load_s"]
    print(f"SmolLM2 load: cold (convert the GGUF) {cold:.1f} s, cached {cached:.1f} s")
    return {"cold": round(cold, 1), "cached": round(cached, 1)}


def floor(args: argparse.Namespace) -> list[dict]:
    """The side by side in both dtypes, printed."""
    floors = [side_by_side(dtype, args.pairs) for dtype in ("float32", "bfloat16")]
    print_table(
        [
            {
                "dtype": f["dtype"],
                **{f"{k}_s": f["s_per_step"][k] for k in ("plain", "steps", "round")},
                **{k: f"{f['ratio_median'][k]} {f['ratio_range'][k]}" for k in ("steps", "round")},
            }
            for f in floors
        ],
        {
            "dtype": "dtype",
            "plain_s": "plain s/step",
            "steps_s": "project s/step",
            "round_s": "client-round s/step",
            "steps": "steps/plain",
            "round": "round/plain",
        },
    )
    return floors


def one_round(args: argparse.Namespace) -> dict:
    """One round of llm-quickstart (both arms): host time, evaluation share, peak memory."""
    one = quickstart(["server.rounds=1"], "all")
    inside = sum(one["parts"].values())
    share = {
        "host_s_total": round(one["total_s"], 2),
        "host_s_math": {k: round(v, 2) for k, v in one["parts"].items()},
        "evaluation_share": round(one["parts"]["evaluation"] / one["total_s"], 4),
        "overhead_share": round(1 - inside / one["total_s"], 4),
        "peak_rss_mb": round(one["peak_rss_mb"]),
    }
    print(
        f"llm-quickstart, 1 round: {share['host_s_total']} s host, evaluation "
        f"{share['evaluation_share']:.1%} (target <= {TARGET_EVAL_SHARE:.0%}), outside the math "
        f"{share['overhead_share']:.1%}, peak RSS {share['peak_rss_mb']} MB"
    )
    return share


def bf16_quality(args: argparse.Namespace) -> dict:
    """The first arm's held-out NLL by round in fp32 and bf16, and the largest difference."""
    rounds = f"server.rounds={args.rounds}"
    nll = {
        dtype: nll_by_round(quickstart([rounds, f"training.dtype={dtype}"], "first"))
        for dtype in ("float32", "bfloat16")
    }
    worst = max(abs(a - b) for a, b in zip(nll["float32"], nll["bfloat16"], strict=True))
    print(f"held-out NLL by round, fp32 {nll['float32']}, bf16 {nll['bfloat16']}")
    print(f"largest |bf16 - fp32| NLL difference: {worst:.4f}")
    return {"nll_by_round": nll, "max_abs_diff": round(worst, 4)}


if __name__ == "__main__":
    main(sys.argv[1:])
