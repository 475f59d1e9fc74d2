"""Where to compress (issue 11, item 5): scenarios/llm-budget.toml's arms at equal bits per
parameter, as a table of allocation × bits and a bytes-vs-quality Pareto curve.

The arms are classed from the resolved scenario: an fstq arm with `budget = "bits"` is an
allocation (its `importance`: fisher, magnitude or random) at its `bits_per_param`; QSGD and
EF-signSGD are the same-bits baselines; the uncapped fstq arms are the fractions sweep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis import metrics, plots
from analysis.runs import complete_seeds, find_arms, host_costs, load_table

KEY = "llm-budget"
TITLE = "Where to compress: allocations at equal bits per parameter (SmolLM2, synthetic)"
SCENARIO = "scenarios/llm-budget.toml"
BASELINE = "fedavg-fp16"
METRIC = "nll"


def allocation(method: dict[str, Any]) -> tuple[str, float | None]:
    """What an arm tests: (allocation, nominal bits per parameter), or (`fractions`, None)
    for an uncapped fstq arm and (`baseline`, None) for the dense one."""
    options = method["codec_options"]
    if method["codec"] == "fstq":
        if options.get("budget") == "bits":
            return options.get("importance", "fisher"), float(options["bits_per_param"])
        return "fractions", None
    if method["codec"] == "qsgd":
        return "qsgd", float(options["bits"])
    if method["codec"] == "signsgd":
        return "ef-signsgd", 1.0
    return "baseline", None


def _final(finished: list[Path], metric: str) -> Any:
    """Per arm and seed, the last evaluation of `metric`."""
    return metrics.final_values(load_table(finished, "evals"), metric).unstack("arm")


def _interval(values: Any) -> list[float | None]:
    return metrics.json_pair(metrics.mean_ci(values))


def summarise(runs: Path, figures: Path) -> dict[str, Any]:
    """The study as plain JSON, its Pareto figure written under `figures`."""
    folder = runs / KEY
    methods = json.loads((folder / "seed-0" / "scenario.json").read_text(encoding="utf-8"))
    done = complete_seeds(find_arms(folder), [m["name"] for m in methods["methods"]])
    finished = [arm.folder for arm in done]
    nll, rouge = _final(finished, METRIC), _final(finished, "rouge_l")
    bits = metrics.bits_per_parameter(done).groupby("arm")["bits_per_param"].mean()
    points = plots.final_points(finished, METRIC).set_index("arm")
    arms = []
    for method in methods["methods"]:
        name = method["name"]
        kind, nominal = allocation(method)
        arms.append(
            {
                "arm": name,
                "allocation": kind,
                "nominal_bits": nominal,
                "bits_per_param": float(bits[name]) if name in bits else None,
                "final": _interval(nll[name]),
                "final_vs_baseline": _interval(nll[name] - nll[BASELINE]),
                "rouge_l": _interval(rouge[name]),
                "uplink_total_mb": float(points.loc[name, "uplink_mb"]),
                "pareto": bool(points.loc[name, "front"]),
            }
        )
    figure = figures / f"{KEY}-pareto.png"
    plots.save(plots.pareto_figure(finished, METRIC), figure)
    return {
        "key": KEY,
        "title": TITLE,
        "scenario": SCENARIO,
        "seeds": sorted(int(s) for s in nll.index),
        "metric": METRIC,
        "baseline": BASELINE,
        "arms": arms,
        "figures": [figure.name],
        **host_costs(done),
    }
