"""How long a QA scenario's prompts are per group, and what seq_len does to their contexts.

    python -m studies.qa_lengths scenarios/xquad.toml --out docs/results/xquad-lengths.json

Per group (a language on XQuAD): examples, the median and 90th-percentile prompt length in
the model's tokens before any cut (chat template included), the share of contexts cut to fit
`training.local.seq_len` (or `--seq-len`), and of those cut, the share whose answer span
survives the cut. This is what sized scenarios/xquad.toml's seq_len.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from simulator.scenario import RealTraining, load_scenario
from simulator.training.data import fit_instructions, load_data
from simulator.training.models import load_tokenizer


def measure(scenario_path: str, seq_len: int | None = None) -> dict[str, Any]:
    """The per-group prompt lengths and cuts of a scenario's instruction data."""
    scenario = load_scenario(scenario_path)
    spec = scenario.training
    if not isinstance(spec, RealTraining) or spec.data.kind == "synthetic":
        raise SystemExit(f"{scenario_path}: needs real training on file data")
    seq_len = seq_len or spec.local.seq_len
    data = load_data(spec.data, spec.task, scenario.seed)
    fitted = fit_instructions(data, load_tokenizer(spec), seq_len)
    groups = np.zeros(len(data.texts), np.int64) if data.groups is None else data.groups
    names = data.group_names or ("all",)
    result: dict[str, Any] = {"scenario": scenario_path, "seq_len": seq_len, "groups": {}}
    for g, name in enumerate(names):
        rows = groups == g
        cut = fitted.cut[rows]
        entry = {
            "examples": int(rows.sum()),
            "median_prompt_tokens": float(np.median(fitted.full_lengths[rows])),
            "p90_prompt_tokens": float(np.percentile(fitted.full_lengths[rows], 90)),
            "cut_share": float(cut.mean()),
        }
        if fitted.answer_kept is not None:
            kept = fitted.answer_kept[rows][cut]
            entry["answer_kept_of_cut"] = float(kept.mean()) if kept.size else None
        result["groups"][name] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("--seq-len", type=int, help="instead of training.local.seq_len")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.scenario, args.seq_len)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
