"""The headline results (docs/RESULTS.md, `make results`): every arm of scenarios/headline.toml
under three networks, and the PubMedQA comparison, each over several seeds.

`make results` runs the sweeps (resumable: a rerun skips finished arms), condenses each study's
comparison into docs/results/results.json with its figures beside it, and renders the document
from that JSON alone, so a test can check that the document's tables match it.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import metrics, plots
from analysis.report import per_seed_values
from analysis.runs import (
    Arm,
    Runs,
    complete_seeds,
    find_arms,
    host_costs,
    load_table,
    parameter_count,
)
from simulator.cache import default_replay_dir
from simulator.sweep import SeedTask, run_tasks
from studies import budget
from studies.results_doc import HEADLINE_ARMS, MASK_COLUMNS, render

log = logging.getLogger(__name__)

MAHIMAHI = "traces/mahimahi"  # shipped with the repository; `make results` runs from its root
BASELINE = "fedavg-fp16"
FSTQ = HEADLINE_ARMS[0]
CONTROLS = ("random-tokens-fstq", "loss-tokens-fstq")
# The paper's ablation without token selection (z = 1), compared where a study has it.
NO_TOKENS = "fed-fstq-no-tokens"
# The Fed-FSTQ paper's abstract: cumulative uplink to the quality
# threshold, FedAvg-LoRA / Fed-FSTQ; and 1 − TTA ratio under the heterogeneous LTE profile.
PAPER = {"bytes_ratio": 46.0, "time_reduction_pct": 52.0}
FIGURES = ("quality-time", "quality-bytes")
# per-seed column, JSON key, scale to the JSON unit
VALUES = (
    ("round", "rounds_to_target", 1.0),
    ("time_s", "time_to_target_s", 1.0),
    ("uplink_bytes", "uplink_to_target_mb", 1e6),
    ("bytes_ratio", "bytes_ratio", 1.0),
    ("time_reduction_pct", "time_reduction_pct", 1.0),
    ("final", "final", 1.0),
    ("uplink_total", "uplink_total_mb", 1e6),
)


@dataclass(frozen=True)
class Study:
    """One comparison: a scenario under one set of overrides, over `seeds` seeds, judged by the
    first evaluation of `metric` that reaches `target`."""

    key: str
    title: str
    scenario: str
    metric: str
    target: float | None  # None: compared at the end only (the budget study)
    overrides: tuple[str, ...] = ()
    seeds: int = 3

    def tasks(self, runs: Path, cache: str | None = None) -> list[SeedTask]:
        out = str(runs / self.key)
        return [SeedTask(self.scenario, self.overrides, s, out, cache) for s in range(self.seeds)]

    @property
    def training(self) -> tuple[str, tuple[str, ...], int]:
        """What its learning can depend on: the scenario and the overrides not about the
        network. Synchronous studies sharing it select, drop and train the same clients on the
        same data, so they differ in their clock only (the replay cache trains them once);
        `collect` checks that against their evaluations."""
        kept = tuple(o for o in self.overrides if not o.startswith("network."))
        return self.scenario, kept, self.seeds


HEADLINE = "scenarios/headline.toml"
LLM = "scenarios/llm-headline.toml"
LLM_METRIC = "answer_accuracy"
LLM_TARGET = 0.6
TWENTY_MBPS = 'network.uplink={kind="constant",mbps=20.0}'
STUDIES = (
    Study(
        "controlled-20mbps", "Controlled 20 Mbps uplink", HEADLINE, "accuracy", 0.8, (TWENTY_MBPS,)
    ),
    Study("hetero-lte", "Heterogeneous LTE straggler tail", HEADLINE, "accuracy", 0.8),
    Study(
        "mahimahi",
        "Replay of the real Mahimahi traces",
        HEADLINE,
        "accuracy",
        0.8,
        (
            f'network.trace_dir="{MAHIMAHI}"',
            'network.uplink={kind="trace",format="mahimahi",files=["*.up"]}',
            'network.downlink={kind="trace",format="mahimahi",files=["*.down"],assign="paired"}',
        ),
    ),
    # The LLM headline (scenarios/llm-headline.toml says how the pilot sized it): answer
    # accuracy ranks the class words; FedAvg-LoRA crossed LLM_TARGET at round 6 of 8 in the
    # pilot's one seed, well above the majority rate (0.28). Whether it does so after round 2
    # and before the last in every seed of the study is what docs/RESULTS.md reports.
    Study(
        "llm-lte",
        "SmolLM2-135M, synthetic instructions, straggler-tail LTE",
        LLM,
        LLM_METRIC,
        LLM_TARGET,
    ),
    Study(
        "llm-20mbps",
        "SmolLM2-135M, synthetic instructions, controlled 20 Mbps uplink",
        LLM,
        LLM_METRIC,
        LLM_TARGET,
        (TWENTY_MBPS,),
    ),
)
BUDGET = Study(budget.KEY, budget.TITLE, budget.SCENARIO, budget.METRIC, None)


def run(
    runs: Path,
    studies: tuple[Study, ...] = (*STUDIES, BUDGET),
    jobs: int = 2,
    cache: str | None = None,
) -> None:
    """Run (or finish) every seed of every study; seed-major, so each study has seeds early.
    Through the replay cache (folder `cache`), the network studies of one scenario train each
    synchronous client-round once."""
    run_tasks(task_order([t for s in studies for t in s.tasks(runs, cache)]), jobs, "results")


def task_order(tasks: list[SeedTask]) -> list[SeedTask]:
    """Seed-major; within a seed, the first study of each scenario file before any second one,
    so that the studies started first train different things and a network study that replays
    another's training starts after it (its client-rounds are then in the cache, or being
    written there)."""
    seen: Counter[tuple[str, int]] = Counter()
    ranked = []
    for task in tasks:
        twin = (task.scenario_file, task.seed)
        ranked.append((task.seed, seen[twin], len(ranked), task))
        seen[twin] += 1
    return [task for *_, task in sorted(ranked)]


def _paired_difference(per_seed: Any, column: str, arm: str, other: str) -> list[float | None]:
    """Mean ± CI over seeds of arm − other (the same seed: common random numbers)."""
    by_seed = per_seed.pivot(index="seed", columns="arm", values=column)
    return metrics.json_pair(metrics.mean_ci(by_seed[arm] - by_seed[other]), 1.0)


def _compute_overhead(finished: Runs) -> dict[str, list[float | None]]:
    """Per arm, mean ± CI over seeds of its mean simulated compute seconds per client-round
    that trained, relative to the baseline's in the same seed (%): what the Fisher proxy's
    counted FLOPs add (the paper: +17 %)."""
    clients = load_table(finished, "clients")
    trained = clients[clients["compute_end_s"].notna()]
    seconds = (trained["compute_end_s"] - trained["compute_start_s"]).rename("compute_s")
    means = trained.assign(compute_s=seconds).groupby(["seed", "arm"])["compute_s"].mean()
    by_seed = means.unstack("arm")
    overhead = (by_seed.div(by_seed[BASELINE], axis=0) - 1.0) * 100.0
    return {
        str(arm): metrics.json_pair(metrics.mean_ci(overhead[arm]), 1.0) for arm in overhead.columns
    }


def _bits_per_parameter(arms: list[Arm]) -> dict[str, float]:
    """Per arm, the mean over seeds and rounds of 8 · uplink bytes per client / P."""
    bits = metrics.bits_per_parameter(arms)
    means = bits.groupby("arm", sort=False)["bits_per_param"].mean()
    return {str(a): float(v) for a, v in means.items()}


def _mask_diagnostics(arms: list[Arm]) -> dict[str, dict[str, float]]:
    """Per token-policy arm, the mean over its client-rounds and seeds of each masks.csv
    diagnostic (simulator/methods/tokens.py: MaskDiagnostics); arms without masks are absent."""
    frames = [
        pd.read_csv(arm.folder / "masks.csv").assign(arm=arm.arm)
        for arm in arms
        if (arm.folder / "masks.csv").is_file()
    ]
    if not frames:
        return {}
    means = pd.concat(frames).groupby("arm", sort=False)[[k for k, _ in MASK_COLUMNS]].mean()
    return {str(arm): {k: float(v) for k, v in row.items()} for arm, row in means.iterrows()}


def _setup(folder: Path) -> dict[str, Any]:
    """What the study ran, from seed 0's resolved scenario: the settings the document shows."""
    scenario = json.loads((folder / "seed-0" / "scenario.json").read_text(encoding="utf-8"))
    training = scenario["training"]
    return {
        "population": scenario["population"],
        "uplink": scenario["network"]["uplink"],
        "downlink": scenario["network"]["downlink"],
        "availability": scenario["availability"],
        "data": training["data"],
        "partition": training["partition"],
        "lora": training["lora"],
        "local": training["local"],
        "rounds": scenario["server"]["rounds"],
        "evaluate every": scenario["evaluation"]["every"],
        "methods": [method["name"] for method in scenario["methods"]],
    }


def _figures(study: Study, finished: Runs, out: Path, kinds: tuple[str, ...]) -> list[str]:
    names = []
    for kind in kinds:
        path = out / f"{study.key}-{kind}.png"
        plots.save(plots.KINDS[kind](finished, study.metric), path)
        names.append(path.name)
    return names


def progress(study: Study, runs: Path) -> str | None:
    """None when every seed of the study has finished every arm; else, in words, what has not."""
    folder = runs / study.key
    scenario = folder / "seed-0" / "scenario.json"
    if not scenario.is_file():
        return "not yet run"
    arms = len(json.loads(scenario.read_text(encoding="utf-8"))["methods"])
    finished = Counter(arm.seed for arm in find_arms(folder) if arm.complete)
    seeds = sum(finished[seed] == arms for seed in range(study.seeds))
    if seeds == study.seeds:
        return None
    return f"{seeds} of {study.seeds} seeds finished"


def _differing_arms(first: Path, twin: Path) -> list[str]:
    """The arms whose evaluations (round, metric, value, per seed) differ between two studies'
    run folders: on one training, those whose learning depends on the network."""
    columns = ["arm", "seed", "round", "metric", "value"]
    a, b = (load_table(folder, "evals")[columns] for folder in (first, twin))
    differ = []
    for arm, mine in a.groupby("arm", sort=False):
        theirs = b[b["arm"] == arm]
        if not mine.reset_index(drop=True).equals(theirs.reset_index(drop=True)):
            differ.append(str(arm))
    return differ


def clocks(done: list[Study], runs: Path) -> dict[str, dict[str, Any]]:
    """For each finished study that shares its training with an earlier finished one: that
    study's key, and the arms whose evaluations nevertheless differ (their messages depend on
    the link). Such a study is another clock on the same quality experiment."""
    first: dict[tuple[str, tuple[str, ...], int], Study] = {}
    out = {}
    for study in done:
        origin = first.setdefault(study.training, study)
        if origin is not study:
            differ = _differing_arms(runs / origin.key, runs / study.key)
            out[study.key] = {"study": origin.key, "differs": differ}
    return out


def summarise(
    study: Study, runs: Path, figures: Path, clock_of: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One study's comparison as plain JSON, and its figures written under `figures` (for
    another clock on a quality experiment, `clock_of`, only the quality-time one)."""
    folder = runs / study.key
    setup = _setup(folder)
    found = complete_seeds(find_arms(folder), setup["methods"])
    finished = [arm.folder for arm in found]
    values = per_seed_values(finished, BASELINE, study.target, study.metric)
    bits = _bits_per_parameter(found)
    overhead = _compute_overhead(finished)
    arms = []
    for arm, frame in values.groupby("arm", sort=False):
        entry = {
            "arm": str(arm),
            "reached": f"{int(frame['reached'].sum())}/{len(frame)}",
            "bits_per_param": bits.get(str(arm)),
            "compute_overhead_pct": overhead.get(str(arm), [None, None]),
            "final_vs_baseline": _paired_difference(values, "final", str(arm), BASELINE),
        }
        entry |= {
            key: metrics.json_pair(metrics.mean_ci(frame[col]), scale) for col, key, scale in VALUES
        }
        arms.append(entry)
    arms.sort(key=lambda entry: setup["methods"].index(entry["arm"]))
    controls = {
        f"{FSTQ} vs {other}": {
            "final": _paired_difference(values, "final", FSTQ, other),
            "time_to_target_s": _paired_difference(values, "time_s", FSTQ, other),
        }
        for other in (*CONTROLS, NO_TOKENS)
        if other in setup["methods"]
    }
    return {
        "key": study.key,
        "title": study.title,
        "scenario": study.scenario,
        "overrides": list(study.overrides),
        "seeds": sorted(int(s) for s in values["seed"].unique()),
        "metric": study.metric,
        "target": study.target,
        "baseline": BASELINE,
        "parameters": next(filter(None, map(parameter_count, found)), None),
        "setup": {k: v for k, v in setup.items() if k != "methods"},
        "arms": arms,
        "controls": controls,
        **({"masks": masks} if (masks := _mask_diagnostics(found)) else {}),
        **({"clock_of": clock_of} if clock_of else {}),
        "figures": _figures(study, finished, figures, FIGURES[:1] if clock_of else FIGURES),
        **host_costs(found),
    }


def collect(
    runs: Path, docs: Path, studies: tuple[Study, ...] = (*STUDIES, BUDGET)
) -> dict[str, Any]:
    """The summary of every study whose seeds have all finished, with the paper's claims, and
    what the others still miss; writes docs/results/results.json. Nothing is carried over from
    an earlier JSON: a study is in the document exactly when its runs are complete on disk."""
    figures = docs / "results"
    figures.mkdir(parents=True, exist_ok=True)
    states = {study.key: progress(study, runs) for study in studies}
    done = [study for study in studies if states[study.key] is None]
    shared = clocks([study for study in done if study is not BUDGET], runs)
    results = {
        "command": "make results",
        "paper": PAPER,
        "token_recall": _token_recall(figures),
        "studies": [
            summarise(study, runs, figures, shared.get(study.key))
            for study in done
            if study is not BUDGET
        ],
        "budget": budget.summarise(runs, figures) if BUDGET in done else None,
        "pending": [
            {"key": study.key, "title": study.title, "state": state}
            for study in studies
            if (state := states[study.key])
        ],
    }
    path = figures / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", path)
    return results


def _token_recall(figures: Path) -> dict[str, Any] | None:
    """The Token Recall measurement (studies/token_recall.py), when it has been made."""
    path = figures / "token-recall.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def load(docs: Path) -> dict[str, Any]:
    """The committed results JSON; missing or damaged, an error naming it and the fix."""
    path = docs / "results" / "results.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SystemExit(
            f"{path}: missing or damaged ({exc}); restore it with `git checkout {path}` "
            "or rebuild it with `make results`"
        ) from None


def _chosen(only: str | None) -> tuple[Study, ...]:
    """The studies --only names (all without it); an unknown key is an error naming the known."""
    if not only:
        return (*STUDIES, BUDGET)
    keys = [key.strip() for key in only.split(",") if key.strip()]
    known = {study.key: study for study in (*STUDIES, BUDGET)}
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise SystemExit(f"--only: unknown study {unknown[0]!r}; use one of {', '.join(known)}")
    return tuple(known[key] for key in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="results", help="sweep folders (resumable, committed)")
    parser.add_argument("--docs", default="docs", help="where RESULTS.md and results/ go")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run in parallel processes")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite RESULTS.md from the JSON only"
    )
    parser.add_argument(
        "--only",
        help="comma-separated study keys to run (default: all; every finished one is shown)",
    )
    parser.add_argument("--cache", help="replay cache folder (default: the user cache's)")
    parser.add_argument("--no-cache", action="store_true", help="train every study afresh")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    docs = Path(args.docs)
    if args.render_only:
        results = load(docs)
    else:
        cache = None if args.no_cache else str(args.cache or default_replay_dir())
        run(Path(args.runs), _chosen(args.only), jobs=args.jobs, cache=cache)
        results = collect(Path(args.runs), docs)
    (docs / "RESULTS.md").write_text(render(results), encoding="utf-8")
    log.info("wrote %s", docs / "RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
