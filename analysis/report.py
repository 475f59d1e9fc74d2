"""Comparison reports: one table per comparison (arms as rows, mean ± 95 % CI over seeds) and
the figures, as Markdown (figures beside it) and as self-contained HTML (figures inlined)."""

from __future__ import annotations

import base64
import html
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import metrics, plots
from analysis.runs import Arm, Runs, find_arms, generations, load_table, parameter_count
from simulator.errors import SimulatorError
from simulator.recorder import lower_is_better

log = logging.getLogger(__name__)

# (per-seed column, report heading, scale, unit, decimals)
COLUMNS = (
    ("time_s", "time to target", 1.0, "s", 1),
    ("uplink_bytes", "uplink to target", 1e6, "MB", 3),
    ("bytes_ratio", "× less uplink than baseline", 1.0, "×", 2),
    ("time_reduction_pct", "faster than baseline", 1.0, "%", 1),
    ("final", "final quality", 1.0, "", 4),
    ("uplink_total", "total uplink", 1e6, "MB", 3),
    ("round_s", "mean round duration", 1.0, "s", 1),
    ("energy_j_fleet", "energy per round, fleet mean", 1.0, "J", 1),
    ("energy_j_straggler", "energy per round, straggler", 1.0, "J", 1),
)
RATIO_UNITS = ("×", "%")
FIGURES = ("quality-time", "quality-bytes", "round-cdf", "timeline")


@dataclass(frozen=True)
class Comparison:
    """Per-seed values, the per-arm table of (mean, CI half-width) and straggler counts."""

    metric: str
    target: float
    baseline: str
    per_seed: pd.DataFrame
    table: pd.DataFrame
    stragglers: pd.DataFrame
    latency: pd.DataFrame
    notes: list[str]  # arms that did not finish or have no evaluations, said beside the table
    samples: list[list[str]]  # generated answers: arm, seed, round, reference, answer


def per_seed_values(runs: Runs, baseline: str, target: float, metric: str | None) -> pd.DataFrame:
    """One row per arm and seed with every value of the report, straight from the CSVs."""
    evals, rounds = load_table(runs, "evals"), load_table(runs, "rounds")
    if evals.empty:
        raise SimulatorError("no arm has any evaluation yet; resume the runs first")
    metric, chosen = metrics.select_metric(evals, metric)
    if baseline not in set(chosen["arm"]) and baseline in {a.arm for a in find_arms(runs)}:
        raise SimulatorError(
            f"--baseline: arm {baseline!r} has no {metric} evaluations (it stopped before its "
            "first one); resume it, or choose another baseline"
        )
    reached = metrics.against_baseline(metrics.to_target(evals, target, metric), baseline)
    final = metrics.final_values(chosen, metric).rename("final")
    by_seed = rounds.groupby(metrics.KEYS)
    totals = pd.concat(
        [
            by_seed["uplink_bytes"].sum().rename("uplink_total"),
            by_seed["duration_s"].mean().rename("round_s"),
        ],
        axis=1,
    )
    energy = metrics.energy_per_round(rounds).set_index(metrics.KEYS)
    return reached.set_index(metrics.KEYS).join([final, totals, energy]).reset_index()


def compare(runs: Runs, baseline: str, target: float, metric: str | None = None) -> Comparison:
    """Aggregate the per-seed values of each arm into mean ± 95 % CI (t, n − 1 df)."""
    values = per_seed_values(runs, baseline, target, metric)
    arms = find_arms(runs)
    unfinished = {(a.arm, a.seed) for a in arms if not a.complete}
    rows = {}
    for arm, frame in values.groupby("arm", sort=False):
        row = {col: metrics.mean_ci(frame[col]) for col, *_ in COLUMNS}
        row["seeds"] = f"{int(frame['reached'].sum())}/{len(frame)} reached"
        cut = sum((arm, seed) in unfinished for seed in frame["seed"])
        if cut:
            row["seeds"] += f", {cut} unfinished"
        rows[arm] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    better = lower_is_better(str(values["metric"].iloc[0]))
    means = table[["uplink_total", "final"]].map(lambda pair: pair[0])
    table["pareto"] = metrics.pareto_front(means["uplink_total"], means["final"], better)
    rounds = load_table(runs, "rounds")
    latency = latency_table(load_table(runs, "clients"), rounds)
    metric = str(values["metric"].iloc[0])
    stragglers = metrics.straggler_phases(rounds)
    return Comparison(
        metric,
        target,
        baseline,
        values,
        table,
        stragglers,
        latency,
        _notes(arms, values),
        _samples(arms),
    )


SAMPLES_PER_ARM = 3
SAMPLE_HEAD = ["arm", "seed", "round", "reference", "answer"]


def _samples(arms: list[Arm]) -> list[list[str]]:
    """The first few generated answers of each arm's lowest seed, beside their references."""
    rows, shown = [], set()
    for arm in sorted(arms, key=lambda a: (a.arm, a.seed)):
        saved = generations(arm)
        if saved is None or arm.arm in shown:
            continue
        shown.add(arm.arm)
        for sample in saved["samples"][:SAMPLES_PER_ARM]:
            cells = [
                arm.arm,
                str(arm.seed),
                str(saved["round"]),
                sample["reference"],
                sample["answer"],
            ]
            rows.append([" ".join(c.split()) for c in cells])
    return rows


def _notes(arms: list[Arm], values: pd.DataFrame) -> list[str]:
    """What the table leaves out or holds only in part, so a reader is not misled."""
    compared = set(zip(values["arm"], values["seed"], strict=True))
    notes = []
    unfinished = [a for a in arms if not a.complete and (a.arm, a.seed) in compared]
    if unfinished:
        notes.append(
            "Unfinished (interrupted or still running; their rows cover only the rounds done, "
            "resume them with fstq-sim run --resume): " + _names(unfinished)
        )
    missing = [a for a in arms if (a.arm, a.seed) not in compared]
    if missing:
        notes.append("Left out (no evaluations yet): " + _names(missing))
    for note in notes:
        log.warning(note)
    return notes


def _names(arms: list[Arm]) -> str:
    return ", ".join(f"{a.arm} (seed {a.seed}, {a.folder})" for a in arms)


def latency_table(clients: pd.DataFrame, rounds: pd.DataFrame) -> pd.DataFrame:
    """Per arm, mean ± CI over seeds of each seed's mean seconds per round in each part
    (straggler and fleet mean): where the round time goes."""
    breakdown = metrics.latency_breakdown(clients, rounds)
    parts = [c for c in breakdown.columns if c.startswith(("straggler_", "fleet_"))]
    per_seed = breakdown.groupby(metrics.KEYS, sort=False)[parts].mean().reset_index()
    return pd.DataFrame.from_dict(
        {
            arm: {part: metrics.mean_ci(frame[part]) for part in parts}
            for arm, frame in per_seed.groupby("arm", sort=False)
        },
        orient="index",
    )


def fmt(pair: tuple[float, float], scale: float, unit: str, decimals: int) -> str:
    """`mean ± half unit`; no ± for one seed; "not reached" for a missed target, "n/a" for a
    ratio without one (a side missed the target, or reached it before sending anything)."""
    mean, half = pair
    if math.isnan(mean):
        return "n/a" if unit in RATIO_UNITS else "not reached"
    text = f"{mean / scale:.{decimals}f}"
    if not math.isnan(half):
        text += f" ± {half / scale:.{decimals}f}"
    return f"{text} {unit}".strip()


def _rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["arm", "seeds", *(c[1] for c in COLUMNS), "Pareto (total uplink vs final)"]
    phases = list(comparison.stragglers.columns)
    head += [f"straggler: {p}" for p in phases]
    rows = []
    for arm, row in comparison.table.iterrows():
        cells = [str(arm), row["seeds"]]
        cells += [fmt(row[col], scale, unit, d) for col, _, scale, unit, d in COLUMNS]
        cells.append("yes" if row["pareto"] else "no")
        cells += [str(int(comparison.stragglers.loc[arm, p])) for p in phases]
        rows.append(cells)
    return head, rows


def _latency_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    latency = comparison.latency
    head = ["arm", *(c.replace("_", " ") for c in latency.columns)]
    rows = [
        [str(arm), *(fmt(pair, 1.0, "s", 1) for pair in row)] for arm, row in latency.iterrows()
    ]
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    body = ("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows)
    return [*lines, *body, ""]


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    cell = "<{0}>{1}</{0}>".format
    text = "<tr>" + "".join(cell("th", html.escape(h)) for h in head) + "</tr>\n"
    text += "".join(
        "<tr>" + "".join(cell("td", html.escape(c)) for c in cells) + "</tr>\n" for cells in rows
    )
    return f"<table>\n{text}</table>\n"


LATENCY_NOTE = "Seconds per round by part, straggler and fleet mean of finished clients:"
SAMPLES_NOTE = "Generated answers (greedy, held-out prompts) at each arm's last generation:"


def _title(comparison: Comparison) -> str:
    return (
        f"Comparison: {comparison.metric} target {comparison.target:g}, "
        f"baseline {comparison.baseline}"
    )


def _markdown(comparison: Comparison, figures: list[Path]) -> str:
    lines = [f"# {_title(comparison)}", "", "Mean ± 95 % CI over seeds (t, n − 1 df).", ""]
    lines += _md_table(*_rows(comparison))
    lines += [f"**Note:** {note}\n" for note in comparison.notes]
    lines += [LATENCY_NOTE, "", *_md_table(*_latency_rows(comparison))]
    if comparison.samples:
        lines += [SAMPLES_NOTE, "", *_md_table(SAMPLE_HEAD, comparison.samples)]
    lines += [f"![{f.stem}]({f.name})" for f in figures]
    return "\n".join(lines) + "\n"


def _html(comparison: Comparison, figures: list[Path]) -> str:
    tables = _html_table(*_rows(comparison))
    tables += "".join(f"<p><b>Note:</b> {html.escape(note)}</p>\n" for note in comparison.notes)
    tables += f"<p>{LATENCY_NOTE}</p>\n" + _html_table(*_latency_rows(comparison))
    if comparison.samples:
        tables += f"<p>{SAMPLES_NOTE}</p>\n" + _html_table(SAMPLE_HEAD, comparison.samples)
    images = "".join(
        f'<figure><img alt="{f.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(f.read_bytes()).decode()}"></figure>\n'
        for f in figures
    )
    title = html.escape(_title(comparison))
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px}"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>\n<h1>{title}</h1>\n"
        f"<p>Mean ± 95 % CI over seeds (t, n − 1 df).</p>\n{tables}"
        f"{images}</body></html>\n"
    )


def write_report(
    runs: Runs, out: str | Path, baseline: str, target: float, metric: str | None = None
) -> list[Path]:
    """Write report.md, report.html and the figures' PNGs into `out` (bits per parameter only
    when an arm saved its state, i.e. real training); returns the reports."""
    out = Path(out)
    comparison = compare(runs, baseline, target, metric)
    real = any(parameter_count(arm) is not None for arm in find_arms(runs))
    figures = [
        plots.save(plots.KINDS[kind](runs, comparison.metric), out / f"{kind}.png")
        for kind in ((*FIGURES, "bits") if real else FIGURES)
    ]
    md, page = out / "report.md", out / "report.html"
    md.write_text(_markdown(comparison, figures), encoding="utf-8")
    page.write_text(_html(comparison, figures), encoding="utf-8")
    log.info("wrote %s and %s", md, page)
    return [md, page]
