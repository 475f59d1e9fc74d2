"""Comparison reports: tables per comparison (arms as rows, mean ± 95 % CI over seeds, in
readable units, every column explained) and the captioned figures, as Markdown (figures beside
it) and self-contained HTML (figures inlined); report.csv keeps the raw values in SI units."""

from __future__ import annotations

import base64
import html
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from analysis import metrics, plots
from analysis.runs import (
    Arm,
    Runs,
    arm_order,
    find_arms,
    generations,
    load_table,
    parameter_count,
    scenario_metric,
    scenarios,
)
from simulator.errors import SimulatorError
from simulator.recorder import REPORT_MARKER, lower_is_better

log = logging.getLogger(__name__)

RATIO_UNITS = ("×", "%")

# (per-seed column, report heading, unit kind, CSV name (SI units), what it means)
COLUMNS = (
    ("time_s", "time to target", "time", "time_to_target_s",
     "simulated wall-clock until the first evaluation at or past the target"),
    ("uplink_bytes", "uplink to target", "bytes", "uplink_to_target_bytes",
     "uplink bytes all clients sent until then"),
    ("bytes_ratio", "× less uplink", "ratio", "uplink_ratio_vs_baseline",
     "the baseline's uplink to target over this arm's, same seed"),
    ("time_reduction_pct", "faster", "pct", "time_reduction_pct_vs_baseline",
     "100 · (1 − time to target / the baseline's), same seed"),
    ("final", "final quality", "quality", "final_quality",
     "the metric at the last evaluation"),
    ("uplink_total", "total uplink", "bytes", "total_uplink_bytes",
     "uplink bytes of the whole run"),
)  # fmt: skip
COSTS = (
    ("round_s", "mean round", "time", "mean_round_s",
     "simulated seconds per round (per server update under FedBuff)"),
    ("energy_j_fleet", "energy / round, fleet", "energy", "energy_per_round_fleet_j",
     "mean over rounds of the mean energy of the clients that worked"),
    ("energy_j_straggler", "energy / round, straggler", "energy",
     "energy_per_round_straggler_j", "mean over rounds of the largest client energy"),
)  # fmt: skip
FIGURES = {
    "quality-time": "quality against simulated wall-clock; line: mean over seeds, band: their "
    "range, dashed: targets, dotted: chance",
    "quality-bytes": "quality against cumulative uplink (log scale): what each arm's bytes bought",
    "round-cdf": "share of rounds that ended within a duration: the straggler tail",
    "timeline": "each client's download, compute and upload in the first rounds (first seed); "
    "x: a client that dropped out or failed",
    "bits": "uplink bits per trainable parameter per received client, by round",
    "quality-by-group": "the final quality per group value of the held-out rows (evaluation.by), "
    "bars: mean over seeds, whiskers: their range, dashed: each arm's overall value",
    "quality-by-client": "each client's final quality on its own held-out shard, worst first "
    "(first seed): how evenly the global model serves the clients",
}
VIEW_FIGURES = ("quality-by-group", "quality-by-client")  # drawn only when the runs have them
CLIENT_STATS = (
    ("clients:mean", "client mean", "mean over clients of their final value"),
    ("clients:worst10", "worst decile", "10th percentile over clients (90th for a loss)"),
    ("clients:std", "spread (std)", "standard deviation over clients"),
)


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
    header: list[str]  # scenario(s), version(s), mode, seeds, date
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)  # arm x group value: (mean, CI)
    clients: pd.DataFrame = field(default_factory=pd.DataFrame)  # arm x clients:<stat>


def per_seed_values(runs: Runs, baseline: str, target: float, metric: str | None) -> pd.DataFrame:
    """One row per arm and seed with every value of the report, straight from the CSVs."""
    evals, rounds = load_table(runs, "evals"), load_table(runs, "rounds")
    if evals.empty:
        raise SimulatorError("no arm has any evaluation yet; resume the runs first")
    metric, chosen = metrics.select_metric(evals, metric, scenario_metric(find_arms(runs)))
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
        row = {col: metrics.mean_ci(frame[col]) for col, *_ in (*COLUMNS, *COSTS)}
        row["seeds"] = f"{int(frame['reached'].sum())}/{len(frame)} reached"
        cut = sum((arm, seed) in unfinished for seed in frame["seed"])
        if cut:
            row["seeds"] += f", {cut} unfinished"
        rows[arm] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table.loc[[a for a in arm_order(arms, baseline) if a in rows]]
    better = lower_is_better(str(values["metric"].iloc[0]))
    means = table[["uplink_total", "final"]].map(lambda pair: pair[0])
    table["pareto"] = metrics.pareto_front(means["uplink_total"], means["final"], better)
    rounds = load_table(runs, "rounds")
    latency = latency_table(load_table(runs, "clients"), rounds)
    metric = str(values["metric"].iloc[0])
    stragglers = metrics.straggler_phases(rounds)
    groups, clients = view_tables(runs, metric, list(table.index))
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
        _header(arms),
        groups,
        clients,
    )


def view_tables(runs: Runs, metric: str, order: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per arm (rows, in `order`), mean ± CI over seeds of the final metric per group value,
    and of the per-client summaries (CLIENT_STATS); empty frames when the runs have none."""
    metric, finals = plots.final_views(runs, metric)
    if finals.empty:
        return pd.DataFrame(), pd.DataFrame()
    table = finals.groupby(["arm", "group"], sort=False)["value"].agg(metrics.mean_ci)
    table = table.unstack("group").reindex([a for a in order if a in set(finals["arm"])])
    clients = [c for c, *_ in CLIENT_STATS if c in table.columns]
    return table.drop(columns=clients), table[clients]


SAMPLES_PER_ARM = 3
SAMPLE_HEAD = ["arm", "seed", "round", "reference", "answer"]


def _samples(arms: list[Arm]) -> list[list[str]]:
    """The first few generated answers of each arm's lowest seed, beside their references."""
    rows, shown = [], set()
    for arm in sorted(arms, key=lambda a: (a.arm, a.seed)):
        saved = generations(arm)
        if not saved or arm.arm in shown:
            continue
        shown.add(arm.arm)
        last = saved[-1]
        for sample in last["samples"][:SAMPLES_PER_ARM]:
            cells = [
                arm.arm,
                str(arm.seed),
                str(last["round"]),
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
    names = scenarios(arms)
    if len(names) > 1:
        notes.append(
            f"Arms of {len(names)} scenarios compared as one ("
            + "; ".join(
                f"{n}: " + ", ".join(dict.fromkeys(a.arm for a in arms if a.scenario == n))
                for n in names
            )
            + "): they may differ in more than the method (clients, network, data, rounds)"
        )
    for note in notes:
        log.warning(note)
    return notes


def _names(arms: list[Arm]) -> str:
    return ", ".join(f"{a.arm} (seed {a.seed}, {a.folder})" for a in arms)


def _header(arms: list[Arm]) -> list[str]:
    """What was compared: scenario(s), fstq-sim version(s) and mode from the manifests, seeds,
    and when the report was written."""
    versions = sorted({a.version or "version not recorded" for a in arms})
    modes = sorted({a.mode for a in arms if a.mode})
    seeds = sorted({a.seed for a in arms})
    return [
        f"Scenario: {', '.join(scenarios(arms))}",
        f"fstq-sim: {', '.join(versions)}" + (f" ({', '.join(modes)} training)" if modes else ""),
        f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)})",
        f"Written: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    ]


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


# unit kind -> ((upper bound of the mean, scale, unit), ...): the first that holds the mean
UNITS: dict[str, tuple[tuple[float, float, str], ...]] = {
    "time": ((120.0, 1.0, "s"), (7200.0, 60.0, "min"), (math.inf, 3600.0, "h")),
    "bytes": ((1e6, 1e3, "kB"), (1e9, 1e6, "MB"), (math.inf, 1e9, "GB")),
    "energy": ((1e4, 1.0, "J"), (math.inf, 1e3, "kJ")),
    "ratio": ((math.inf, 1.0, "×"),),
    "pct": ((math.inf, 1.0, "%"),),
    "quality": ((math.inf, 1.0, ""),),
}


def human(pair: tuple[float, float], kind: str) -> str:
    """`mean ± half unit` in a unit that suits the mean (s/min/h, kB/MB/GB, J/kJ) with three
    significant digits, no "-0.0"; the raw value is in report.csv."""
    mean = pair[0]
    if math.isnan(mean):
        return "n/a" if kind in ("ratio", "pct") else "not reached"
    scale, unit = next((s, u) for bound, s, u in UNITS[kind] if abs(mean) < bound)
    size = abs(mean) / scale
    decimals = 4 if kind == "quality" else 0 if size >= 100 else 1 if size >= 10 else 2
    values = [round(v / scale, decimals) + 0.0 for v in pair]  # + 0.0: -0.0 reads 0.0
    return fmt((values[0], values[1]), 1.0, unit, decimals)


def _explain(columns: tuple[tuple[str, str, str, str, str], ...]) -> list[str]:
    return [f"{heading}: {meaning}" for _, heading, _, _, meaning in columns]


MAIN_EXTRA = (
    "seeds: how many seeds reached the target (and how many are unfinished)",
    "Pareto: yes when no other arm has less total uplink and a better final quality",
)
COSTS_EXTRA = (
    "straggler slowed by: in how many rounds (all seeds) the phase that took the slowest "
    "client longest was download, compute or upload: what to speed up first",
)
LATENCY_EXPLAINED = (
    "Seconds per round by part (mean over seeds of each seed's mean over rounds): download, "
    "compute, upload and waiting (the rest of the round), for the fleet mean of the clients "
    "that finished and for the straggler, the client the round waited for."
)


def _rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["arm", "seeds", *(c[1] for c in COLUMNS), "Pareto"]
    rows = []
    for arm, row in comparison.table.iterrows():
        cells = [str(arm), row["seeds"]]
        cells += [human(row[col], kind) for col, _, kind, *_ in COLUMNS]
        cells.append("yes" if row["pareto"] else "no")
        rows.append(cells)
    return head, rows


def _straggler_text(counts: pd.Series) -> str:
    total = int(counts.sum())
    parts = [(p, int(n)) for p, n in counts.sort_values(ascending=False).items() if n > 0]
    return ", ".join(f"{p} {n}/{total}" for p, n in parts) or "none"


def _cost_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["arm", *(c[1] for c in COSTS), "straggler slowed by"]
    rows = [
        [
            str(arm),
            *(human(row[col], kind) for col, _, kind, *_ in COSTS),
            _straggler_text(comparison.stragglers.loc[arm]),
        ]
        for arm, row in comparison.table.iterrows()
    ]
    return head, rows


def _latency_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    latency = comparison.latency.reindex(comparison.table.index)
    head = ["arm", *(c.replace("_", " ") for c in latency.columns)]
    rows = [[str(arm), *(human(pair, "time") for pair in row)] for arm, row in latency.iterrows()]
    return head, rows


def raw_table(comparison: Comparison) -> pd.DataFrame:
    """One row per arm with every reported mean and CI half-width in SI units (seconds,
    bytes, joules), the straggler counts and the Pareto flag: the values behind report.md."""
    table = comparison.table
    out = pd.DataFrame({"arm": table.index, "seeds": table["seeds"].to_numpy()})
    for col, _, _, name, _ in (*COLUMNS, *COSTS):
        out[f"{name}_mean"] = [pair[0] for pair in table[col]]
        out[f"{name}_ci95"] = [pair[1] for pair in table[col]]
    out["pareto"] = table["pareto"].to_numpy()
    for phase in comparison.stragglers.columns:
        counts = comparison.stragglers.loc[table.index, phase]
        out[f"straggler_slowed_by_{phase}_rounds"] = counts.to_numpy()
    latency = comparison.latency.reindex(table.index)
    for part in latency.columns:
        out[f"{part}_s_mean"] = [pair[0] for pair in latency[part]]
        out[f"{part}_s_ci95"] = [pair[1] for pair in latency[part]]
    views = pd.concat([comparison.groups.add_prefix("group_"), comparison.clients], axis=1)
    for view, pairs in views.reindex(table.index).items():
        pairs = [p if isinstance(p, tuple) else (math.nan, math.nan) for p in pairs]
        name = "final_" + str(view).replace(":", "_")
        out[f"{name}_mean"] = [pair[0] for pair in pairs]
        out[f"{name}_ci95"] = [pair[1] for pair in pairs]
    return out


def _group_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    groups = comparison.groups
    rows = [[str(arm), *(human(p, "quality") for p in row)] for arm, row in groups.iterrows()]
    return ["arm", *map(str, groups.columns)], rows


def _client_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    clients = comparison.clients
    head = ["arm", *(heading for view, heading, _ in CLIENT_STATS if view in clients.columns)]
    rows = [[str(arm), *(human(p, "quality") for p in row)] for arm, row in clients.iterrows()]
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


SAMPLES_NOTE = "Generated answers (greedy, held-out prompts) at each arm's last generation:"
CI_NOTE = "Mean ± 95 % CI over seeds (t, n − 1 df); raw values in SI units in report.csv."


def _title(comparison: Comparison) -> str:
    return (
        f"Comparison: {comparison.metric} target {comparison.target:g}, "
        f"baseline {comparison.baseline}"
    )


def _sections(
    comparison: Comparison,
) -> list[tuple[str, tuple[list[str], list[list[str]]], list[str]]]:
    """(lead, table, column explanations) of each table, in order."""
    main = ("To the target and overall:", _rows(comparison), [*_explain(COLUMNS), *MAIN_EXTRA])
    costs = ("Round costs:", _cost_rows(comparison), [*_explain(COSTS), *COSTS_EXTRA])
    latency = (LATENCY_EXPLAINED, _latency_rows(comparison), [])
    sections = [main, costs, latency]
    metric = comparison.metric
    if not comparison.groups.empty:
        lead = f"Final {metric} per group value of the held-out rows (evaluation.by):"
        sections.append((lead, _group_rows(comparison), []))
    if not comparison.clients.empty:
        lead = (
            f"Per-client evaluation of the global model, final {metric} on each client's own "
            "held-out shard:"
        )
        explained = [f"{heading}: {meaning}" for _, heading, meaning in CLIENT_STATS]
        sections.append((lead, _client_rows(comparison), explained))
    if comparison.samples:
        sections.append((SAMPLES_NOTE, (SAMPLE_HEAD, comparison.samples), []))
    return sections


def _caption(number: int, figure: Path) -> str:
    return f"Figure {number}: {FIGURES[figure.stem]}"


def _markdown(comparison: Comparison, figures: list[Path]) -> str:
    lines = [f"# {_title(comparison)}", "", *(f"- {h}" for h in comparison.header), ""]
    lines += [CI_NOTE, ""]
    for i, (lead, table, explained) in enumerate(_sections(comparison)):
        lines += [lead, "", *_md_table(*table)]
        lines += [f"- {text}" for text in explained] + ([""] if explained else [])
        if i == 0:
            lines += [f"**Note:** {note}\n" for note in comparison.notes]
    for number, f in enumerate(figures, 1):
        lines += [f"![{f.stem}]({f.name})", "", f"*{_caption(number, f)}*", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _html(comparison: Comparison, figures: list[Path]) -> str:
    header = "".join(f"<li>{html.escape(h)}</li>" for h in comparison.header)
    body = f"<ul>{header}</ul>\n<p>{html.escape(CI_NOTE)}</p>\n"
    for i, (lead, table, explained) in enumerate(_sections(comparison)):
        body += f"<p>{html.escape(lead)}</p>\n" + _html_table(*table)
        if explained:
            body += "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in explained) + "</ul>\n"
        if i == 0:
            body += "".join(
                f"<p><b>Note:</b> {html.escape(note)}</p>\n" for note in comparison.notes
            )
    body += "".join(
        f'<figure><img alt="{f.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(f.read_bytes()).decode()}">'
        f"<figcaption>{html.escape(_caption(number, f))}</figcaption></figure>\n"
        for number, f in enumerate(figures, 1)
    )
    title = html.escape(_title(comparison))
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px}"
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>\n<h1>{title}</h1>\n{body}</body></html>\n"
    )


def write_report(
    runs: Runs, out: str | Path, baseline: str, target: float, metric: str | None = None
) -> list[Path]:
    """Write report.md, report.html, report.csv (raw values) and the figures' PNGs into `out`
    (bits per parameter only when an arm saved its state, i.e. real training); returns the
    reports."""
    out = plots.writable(out, folder=True)
    comparison = compare(runs, baseline, target, metric)
    (out / REPORT_MARKER).write_text('{"format": "fstq-sim report"}\n', encoding="utf-8")
    real = any(parameter_count(arm) is not None for arm in find_arms(runs))
    kinds = [k for k in FIGURES if (k != "bits" or real) and k not in VIEW_FIGURES]
    kinds += ["quality-by-group"] * (not comparison.groups.empty)
    kinds += ["quality-by-client"] * (not comparison.clients.empty)
    figures = [
        plots.save(plots.KINDS[kind](runs, comparison.metric, baseline), out / f"{kind}.png")
        for kind in kinds
    ]
    md, page, raw = out / "report.md", out / "report.html", out / "report.csv"
    md.write_text(_markdown(comparison, figures), encoding="utf-8")
    page.write_text(_html(comparison, figures), encoding="utf-8")
    raw_table(comparison).to_csv(raw, index=False)
    log.info("wrote %s, %s and %s", md, page, raw)
    return [md, page, raw]
