"""LLM-mode benchmarks: the embedded SmolLM2-135M-Instruct on this host.

1. Load time: cold (the GGUF file dequantised and converted into a fresh cache folder) and
   cached (the converted safetensors folder), each in a fresh process, LoRA wrap included.
2. The floor, side by side in the same minutes: S = 10 local steps at 4 × 128 (the synthetic
   instructions, never cut, ~128 tokens each: batch widths 125-131) by the project
   (`train_local`, and a whole client-round `client_update`, encode included) against a plain
   transformers + PEFT loop on the same batches (LoRA r = 8 on q/k/v/o, AdamW, clipping at 1.0,
   the same 2 threads; labels with -100 off the targets, full logits, as a user would write it).
   Paired runs in rotating order, per-pair ratios project / plain with their median and range, in
   fp32 and in bf16 (CPU autocast on both sides). Target: the project's fp32 local step <= 1.05x
   the plain fp32 loop.
3. One round of llm-quickstart at its own settings, in a fresh process: host seconds, the share
   spent in evaluation (target <= 25 %), the share outside the model's math, peak resident
   memory (VmHWM; target <= 2.5 GB).
4. bf16 quality: the quickstart's held-out NLL after each round in bf16 and in fp32 (first arm,
   fewer rounds with --rounds), and the largest difference.
5. With --before DIR (a checkout of the commit before the LLM floor work, bench/client_round.py
   copied into it): a same-minute A/B of one client-round (bench/client_round.py, S = 10 at
   4 x ~128) by tools/ab_bench.py, this checkout in fp32 and in bf16 against that one (fp32).
   Target: bf16 >= 2x faster than the old checkout.

Not a test: it prints tables and writes bench/results/llm.json.

    .venv/bin/python bench/llm.py [--pairs 3] [--steps 10] [--rounds 3] [--skip-load]
                                  [--floor-only] [--before DIR [--ab-only]]

The JSON is rewritten after each stage, so a run cut short keeps what it measured; a stage a run
skips (--skip-load, --floor-only, --ab-only) keeps its figures from the JSON already there, and
`commands` says which command (and host load) measured each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import RESULTS, Floor, print_table, save

from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "llm-quickstart.toml"
TARGET_RATIO = 1.05
TARGET_EVAL_SHARE = 0.25
TARGET_PEAK_MB = 2500
TARGET_OVERHEAD = 0.05  # issue 11
TOLERANCE_BF16_NLL = 0.05  # nats: the bf16 held-out NLL within this of fp32's, every round
# 4 rows of ~128 tokens: the synthetic instructions are never cut (only a context is), so
# seq_len leaves room for the longest example and the words fill ~128 positions (widths are
# recorded per batch).
STAGES = ("load_s", "side_by_side", "quickstart_one_round", "bf16_quality", "ab")
TARGET_AB_SPEEDUP = 2.0  # bf16 client-round against the old checkout's fp32 one
SHAPE = {"batch_size": 4, "seq_len": 136, "steps": 10}
WORDS = "[64, 72]"

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


def side_by_side(dtype: str, pairs: int) -> dict:
    """Paired host seconds of S steps: project local steps, project client-round, plain loop."""
    from simulator.training.client import Arm, Job, client_update

    sets = [f"training.local.{k}={v}" for k, v in SHAPE.items()]
    sets += [f"training.data.words={WORDS}", f"training.dtype={dtype}"]
    floor = Floor(load_scenario(SCENARIO, sets))
    arm = Arm.of(floor.scenario.methods[0])
    initial = floor.task.initial_flat(arm)

    def project_round() -> None:
        client_update(floor.task, arm, Job(0, 0, initial))

    return {"dtype": dtype, **floor.paired({"round": project_round}, pairs)}


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
    parser.add_argument("--before", type=Path, help="an older checkout to A/B a client-round with")
    parser.add_argument("--ab-only", action="store_true", help="only the A/B (needs --before)")
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
            "ab_speedup": TARGET_AB_SPEEDUP,
        },
    }
    if args.ab_only and not args.before:
        parser.error("--ab-only needs --before DIR (the older checkout to compare with)")
    stages = [] if args.ab_only else [("side_by_side", floor)]
    if not (args.skip_load or args.ab_only):
        stages.insert(0, ("load_s", load_times))
    if not (args.floor_only or args.ab_only):
        stages += [("quickstart_one_round", one_round), ("bf16_quality", bf16_quality)]
    if args.before:
        stages.append(("ab", ab))
    result |= kept_stages(result, [name for name, _ in stages])
    for name, stage in stages:
        began = round(os.getloadavg()[0], 1)
        result[name] = stage(args)
        result["load_average"]["end"] = round(os.getloadavg()[0], 1)
        result["commands"][name] = {
            "command": command,
            "load_average": [began, result["load_average"]["end"]],
        }
        save("llm", result)  # a long run keeps every stage it finished
    if "side_by_side" in result:
        fp32, bf16 = result["side_by_side"]
        ratio = statistics.median(bf16["seconds"]["steps"]) / statistics.median(
            fp32["seconds"]["plain"]
        )
        result["bf16_vs_plain_fp32"] = round(ratio, 3)
    save("llm", result)
    return result


def kept_stages(result: dict, rerun: list[str]) -> dict:
    """The stages of the JSON already there that this run does not measure again (each with
    the command and load that measured it, under `commands`), so a partial rerun keeps them."""
    path = RESULTS / "llm.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    commands = {
        name: old.get("commands", {}).get(name, {"command": old.get("command")})
        for name in STAGES
        if name in old and name not in rerun
    }
    return {name: old[name] for name in commands} | {"commands": commands}


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


def ab(args: argparse.Namespace) -> dict:
    """tools/ab_bench.py on one client-round: this checkout in fp32, then in bf16, against the
    older checkout in fp32 (its default), each its own paired series."""
    found = {}
    for dtype in ("float32", "bfloat16"):
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "ab.json"
            subprocess.run(
                [
                    sys.executable,
                    "tools/ab_bench.py",
                    f"--before={args.before}",
                    "--script=bench/client_round.py",
                    "--field=seconds_median",
                    f"--pairs={args.pairs}",
                    f"--after-args=--set training.dtype={dtype}",
                    f"--save={out}",
                ],
                cwd=ROOT,
                check=True,
            )
            found[dtype] = json.loads(out.read_text(encoding="utf-8"))
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
