"""Codec throughput, the Fisher proxy's per-step overhead, and inference token reduction.

1. Encode + decode throughput of every built-in codec on a 10M-coordinate update (100 groups of
   100,000; Gaussian update, log-normal Fisher), best of 3; target ≥ 50M coordinates/s for
   Fed-FSTQ (issue 4). Fed-FSTQ is measured without a budget (percentile thresholds) and with
   a byte budget (exact sort + bisection).
2. Per-step host time of MiniLM LoRA local training (batch 8 × 48, quickstart settings) plain,
   with Fed-FSTQ's Fisher proxy on every step (embedding-gradient scores + adapter Fisher EMA:
   the worst case), and on Algorithm 1's schedule (H = 10); target ≤ 10 % (the paper: +17 %).
3. Inference token reduction on MiniLM (longer synthetic texts, keep = 0.5): forward latency
   and accuracy with all tokens vs the top-scored half.

Not a test: it prints a table and writes bench/results/codecs.json.

    .venv/bin/python bench/codecs.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from common import best_of, print_table, save

from simulator.methods import registry
from simulator.methods.base import CodecContext, Group
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.toml"
N, GROUP = 10_000_000, 100_000
TARGET_FSTQ_COORDS_PER_S = 50e6
TARGET_FISHER_OVERHEAD = 0.10
REPEATS = 3


def codec_throughput() -> list[dict]:
    """Encode+decode seconds per codec for a 10M-coordinate update."""
    rng = np.random.default_rng(0)
    groups = tuple(Group(f"g{i}", i * GROUP, (GROUP,)) for i in range(N // GROUP))
    update = rng.normal(0, 0.01, N).astype(np.float32)
    fisher = rng.lognormal(0, 1, N).astype(np.float32)
    cases = [(name, {}, None) for name in registry.CODECS.builtins]
    cases.append(("fstq", {}, 2 * N // 10))  # budgeted: a fifth of dense fp16
    rows = []
    for name, options, budget in cases:
        codec = registry.codec(name, options)
        context = CodecContext(groups, seed=1, fisher=fisher, budget_bytes=budget)
        message = codec.encode(update, context)
        encode = best_of(REPEATS, lambda c=codec, x=context: c.encode(update, x))
        decode = best_of(REPEATS, lambda c=codec, m=message, x=context: c.decode(m, x))
        rows.append(
            {
                "codec": name + (" (budget)" if budget else ""),
                "bytes": len(message),
                "bits_per_coordinate": round(8 * len(message) / N, 3),
                "encode_s": round(encode, 3),
                "decode_s": round(decode, 3),
                "coords_per_s": round(N / (encode + decode)),
            }
        )
    return rows


def fisher_overhead() -> dict:
    """Host seconds per local step: plain, Fisher proxy every step, Algorithm 1 schedule."""
    from simulator.methods.tokens import FisherTokens, TokenOptions
    from simulator.training.local import train_local
    from simulator.training.task import RealTask

    steps = 20
    scenario = load_scenario(QUICKSTART, [f"training.local.steps={steps}"])
    task = RealTask(scenario)
    indices = task.data.train[:400]
    settings = scenario.training.local
    start_flat = task.model.get_flat()

    def run(refresh: int | None) -> float:
        hook = None
        if refresh is not None:
            policy = FisherTokens(TokenOptions(keep=0.5, refresh=refresh))
            hook = policy.hook(task.vocab_size, task.special_ids, 0)
        task.model.set_flat(start_flat)
        begin = time.perf_counter()
        train_local(
            task.model,
            task.tokens,
            indices,
            settings,
            task.flops,
            np.random.SeedSequence(0),
            hook,
            None if refresh is None else 0.9,
        )
        return (time.perf_counter() - begin) / steps

    run(None)  # warm-up
    plain = min(run(None) for _ in range(REPEATS))
    every = min(run(1) for _ in range(REPEATS))
    scheduled = min(run(10) for _ in range(REPEATS))
    return {
        "steps": steps,
        "plain_ms_per_step": round(1000 * plain, 1),
        "fisher_every_step_ms": round(1000 * every, 1),
        "fisher_h10_ms": round(1000 * scheduled, 1),
        "overhead_every_step": round(every / plain - 1, 4),
        "overhead_h10": round(scheduled / plain - 1, 4),
    }


def inference_reduction() -> dict:
    """Latency and accuracy of MiniLM inference with all tokens vs the top half by score."""
    from simulator.training.inference import reduce_tokens, token_scores
    from simulator.training.local import train_local
    from simulator.training.task import RealTask

    scenario = load_scenario(
        QUICKSTART,
        [
            "training.data.words=[60, 100]",
            "training.local.seq_len=128",
            "training.local.steps=60",
            "training.local.batch_size=16",
        ],
    )
    task = RealTask(scenario)
    train_local(
        task.model,
        task.tokens,
        task.data.train,
        scenario.training.local,
        task.flops,
        np.random.SeedSequence(0),
    )
    scores = token_scores(task.model, task.tokens, torch.from_numpy(task.data.train[:512]), 32)
    rows = torch.from_numpy(task.data.validation)
    ids, mask = task.tokens.input_ids[rows], task.tokens.attention_mask[rows]
    short_ids, short_mask = reduce_tokens(ids, mask, scores, task.special_ids, keep=0.5)
    labels = task.tokens.labels[rows]
    model = task.model.model.eval()

    @torch.no_grad()
    def accuracy_and_time(i: torch.Tensor, m: torch.Tensor) -> tuple[float, float]:
        begin = time.perf_counter()
        logits = torch.cat(
            [
                model(input_ids=i[s : s + 64], attention_mask=m[s : s + 64]).logits
                for s in range(0, len(i), 64)
            ]
        )
        return float((logits.argmax(-1) == labels).float().mean()), time.perf_counter() - begin

    accuracy_and_time(ids, mask)  # warm-up
    full = min((accuracy_and_time(ids, mask) for _ in range(REPEATS)), key=lambda r: r[1])
    short = min(
        (accuracy_and_time(short_ids, short_mask) for _ in range(REPEATS)), key=lambda r: r[1]
    )
    return {
        "examples": len(rows),
        "mean_tokens_full": round(float(mask.sum(1).float().mean()), 1),
        "mean_tokens_reduced": round(float(short_mask.sum(1).float().mean()), 1),
        "keep": 0.5,
        "accuracy_full": round(full[0], 4),
        "accuracy_reduced": round(short[0], 4),
        "seconds_full": round(full[1], 3),
        "seconds_reduced": round(short[1], 3),
        "speedup": round(full[1] / short[1], 3),
    }


def main() -> dict:
    """Run the three measurements, print tables and write the JSON."""
    codecs = codec_throughput()
    print_table(
        [{**row, "mcoords": round(row["coords_per_s"] / 1e6, 1)} for row in codecs],
        {
            "codec": "codec",
            "bits_per_coordinate": "bits/coord",
            "encode_s": "encode s",
            "decode_s": "decode s",
            "mcoords": "Mcoords/s",
        },
    )
    fisher = fisher_overhead()
    print(
        f"local step: plain {fisher['plain_ms_per_step']} ms, Fisher every step "
        f"{fisher['fisher_every_step_ms']} ms (+{fisher['overhead_every_step']:.1%}), "
        f"H=10 {fisher['fisher_h10_ms']} ms (+{fisher['overhead_h10']:.1%})"
    )
    inference = inference_reduction()
    print(
        f"inference keep 0.5: {inference['mean_tokens_full']} -> "
        f"{inference['mean_tokens_reduced']} tokens, x{inference['speedup']} faster, accuracy "
        f"{inference['accuracy_full']} -> {inference['accuracy_reduced']}"
    )
    fstq = next(r for r in codecs if r["codec"] == "fstq")
    result = {
        "benchmark": "codecs",
        "command": "python bench/codecs.py",
        "coordinates": N,
        "codecs": codecs,
        "target_fstq_coords_per_s": TARGET_FSTQ_COORDS_PER_S,
        "fstq_met": fstq["coords_per_s"] >= TARGET_FSTQ_COORDS_PER_S,
        "fisher_overhead": fisher,
        "target_fisher_overhead": TARGET_FISHER_OVERHEAD,
        "fisher_met": fisher["overhead_every_step"] <= TARGET_FISHER_OVERHEAD,
        "inference_reduction": inference,
    }
    save("codecs", result)
    return result


if __name__ == "__main__":
    main()
