"""Figures from run directories (matplotlib, headless); PNG or SVG by the output's suffix.

Each figure function takes runs (arm, run or sweep folders) and returns a Figure; `save` writes
it. Arms keep one colour across figures and appear in the scenario's order, the baseline first;
seeds of an arm are drawn as a band.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from analysis import metrics
from analysis.runs import (
    Runs,
    arm_order,
    find_arms,
    load_client_evals,
    load_table,
    load_views,
    resolved_scenario,
    scenario_metric,
)
from simulator.errors import RunDirError, SimulatorError
from simulator.recorder import lower_is_better

# Chosen so that no two colours are alike (smallest CIELAB distance between any pair: 39; the
# Okabe-Ito set had 26 for blue / sky blue and 33 for orange / vermillion); the first arms, the
# baseline first, get the most distinct ones.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#EE3377",
    "#000000",
    "#BBBBBB",
    "#CC3311",
    "#332288",
    "#8C564B",
    "#DDCC77",
)
PHASE_COLOURS = {"download": PALETTE[0], "compute": PALETTE[1], "upload": PALETTE[2]}
FAILED_MARKER = {"marker": "x", "color": "#CC3311", "linestyle": "none", "markersize": 6}
SUFFIXES = (".png", ".svg")
TIMELINE_MAX_HEIGHT = 12.0  # inches: a many-arm timeline stays a figure, not a scroll
TIMELINE_PANEL = (1.6, 3.5)  # inches per arm panel, least and most


def time_unit(longest_s: float) -> tuple[str, float]:
    """A readable unit for a time axis that runs to longest_s seconds."""
    if longest_s < 120:
        return "seconds", 1.0
    if longest_s < 2 * 3600:
        return "minutes", 60.0
    return "hours", 3600.0


def _order(runs: Runs, baseline: str | None) -> list[str]:
    return arm_order(find_arms(runs), baseline)


def _colours(order: list[str]) -> dict[str, str]:
    return {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(order)}


def _by_arm(frame: pd.DataFrame, order: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """The frame's rows per arm, in `order` (so legends list the baseline first)."""
    groups = dict(tuple(frame.groupby("arm", sort=False)))
    return [(arm, groups[arm]) for arm in order if arm in groups]


def _figure() -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.grid(alpha=0.3)
    return fig, ax


def log_axis(axis: matplotlib.axis.Axis, low: float, high: float) -> None:
    """A log axis labelled in plain numbers at 1-9, 1-2-5 or 1 × 10^k by the decades spanned,
    minor ticks unlabelled: labels such as "3×10⁻¹4×10⁻¹" never run into each other."""
    decades = np.log10(high / low) if low > 0 and high > low else 0.0
    subs = np.arange(1.0, 10.0) if decades < 1 else (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=30))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(1.0, 10.0), numticks=30))
    axis.set_minor_formatter(ticker.NullFormatter())


def _seed_band(ax: plt.Axes, frame: pd.DataFrame, x: str, scale: float, **style) -> None:
    """The mean over seeds as a step line with a marker at each evaluation (so the last one
    reads as a point, not a spike) and the seeds' min-max as a band, on the union of their x
    values (each seed holds its last evaluation until the next)."""
    grid = np.unique(frame[x].to_numpy(float))
    held = []
    for _, seed in frame.sort_values(x).groupby("seed"):
        at = np.searchsorted(seed[x].to_numpy(float), grid, side="right") - 1
        values = seed["value"].to_numpy(float)[np.clip(at, 0, None)]
        held.append(np.where(at >= 0, values, np.nan))
    held = np.array(held)
    ax.step(grid / scale, np.nanmean(held, axis=0), where="post", lw=2, marker="o", ms=3, **style)
    if len(held) > 1:
        lo, hi = np.nanmin(held, axis=0), np.nanmax(held, axis=0)
        ax.fill_between(grid / scale, lo, hi, step="post", alpha=0.2, color=style["color"])


def reference_lines(runs: Runs, metric: str) -> list[tuple[float, str]]:
    """(value, label) of the horizontal lines a quality axis gets: the scenario's targets when
    they are on `metric`, and chance (1 / classes) for accuracy when the data names classes."""
    scenario = resolved_scenario(find_arms(runs)[0])
    evaluation = scenario.get("evaluation", {})
    lines = []
    if evaluation.get("metric") == metric:
        lines += [(float(t), f"target {t:g}") for t in evaluation.get("targets", [])]
    classes = scenario.get("training", {}).get("data", {}).get("classes")
    if metric == "accuracy" and isinstance(classes, int) and classes > 1:
        lines.append((1.0 / classes, f"chance (1/{classes})"))
    return lines


def _reference(ax: plt.Axes, lines: list[tuple[float, str]]) -> None:
    for value, label in lines:
        style = ":" if label.startswith("chance") else "--"
        ax.axhline(value, color="#555555", lw=1, ls=style, label=label, zorder=1)


def quality_figure(
    runs: Runs, against: str = "time", metric: str | None = None, baseline: str | None = None
) -> Figure:
    """Quality against simulated wall-clock (`time`) or cumulative uplink bytes (`bytes`, log x),
    one line per arm (the baseline's first), seeds as a min-max band, the scenario's targets and
    chance as lines. The metric defaults to the scenario's own."""
    evals = load_table(runs, "evals")
    arms = find_arms(runs)
    metric, evals = metrics.select_metric(evals, metric, scenario_metric(arms))
    fig, ax = _figure()
    if against == "time":
        x, (unit, scale) = "time_s", time_unit(float(evals["time_s"].max()))
        ax.set_xlabel(f"simulated wall-clock ({unit})")
    else:
        x, scale, unit = "uplink_bytes_cum", 1e6, "MB"
        evals = evals[evals[x] > 0]  # round 0 has sent nothing: no place on a log axis
        ax.set_xscale("log")
        log_axis(ax.xaxis, evals[x].min() / scale, evals[x].max() / scale)
        ax.set_xlabel("cumulative uplink (MB, log scale)")
    order = arm_order(arms, baseline)
    colours = _colours(order)
    for arm, frame in _by_arm(evals, order):
        _seed_band(ax, frame, x, scale, color=colours[arm], label=arm)
    _reference(ax, reference_lines(runs, metric))
    source = ", ".join(sorted(evals["source"].unique()))
    ax.set_ylabel(f"{metric} ({source})")
    what = "simulated wall-clock" if against == "time" else "cumulative uplink bytes"
    ax.set_title(f"{metric} vs {what}")
    ax.legend(fontsize=8)
    return fig


def round_cdf_figure(runs: Runs, baseline: str | None = None) -> Figure:
    """Empirical CDF of round durations per arm (all seeds pooled): the straggler tail."""
    rounds = load_table(runs, "rounds")
    fig, ax = _figure()
    unit, scale = time_unit(float(rounds["duration_s"].max()))
    order = _order(runs, baseline)
    colours = _colours(order)
    for arm, frame in _by_arm(rounds, order):
        durations = np.sort(frame["duration_s"].to_numpy(float)) / scale
        share = np.arange(1, len(durations) + 1) / len(durations)
        ax.step(durations, share, where="post", lw=2, color=colours[arm], label=arm)
    ax.set_xlabel(f"round duration ({unit}, simulated)")
    ax.set_ylabel("fraction of rounds")
    ax.set_title("round-duration CDF")
    ax.legend(fontsize=8)
    return fig


def _timeline_panel(ax: plt.Axes, frame: pd.DataFrame, scale: float, labelled: bool) -> None:
    """One arm's client rows: a bar per phase, an x where a client-round failed or dropped out
    (at the end of its last phase, or the round's start when it never began)."""
    rows = np.arange(len(frame))
    for phase, colour in PHASE_COLOURS.items():
        start, end = frame[f"{phase}_start_s"] / scale, frame[f"{phase}_end_s"] / scale
        ax.barh(rows, end - start, left=start, color=colour, label=phase)
    ends = frame[[f"{p}_end_s" for p in PHASE_COLOURS]].max(axis=1).fillna(frame["start_s"])
    for status in sorted(set(frame["status"]) - {"ok"}):
        failed = (frame["status"] == status).to_numpy()
        ax.plot(ends[failed] / scale, rows[failed], **FAILED_MARKER, label=status)
    if labelled:
        labels = [f"r{r} c{c}" for r, c in zip(frame["round"], frame["client"], strict=True)]
        ax.set_yticks(rows, labels, fontsize=7)
    else:  # too many rows to name each: name each round's first
        first = ~frame["round"].duplicated().to_numpy()
        ax.set_yticks(rows[first], [f"r{r}" for r in frame["round"][first]], fontsize=7)
    ax.set_ylim(len(frame) - 0.5, -0.5)
    ax.margins(x=0.02)  # a client dropped at the round's start stays visible at the axis
    ax.grid(alpha=0.3, axis="x")


def timeline_figure(
    runs: Runs, rounds: list[int] | None = None, baseline: str | None = None
) -> Figure:
    """Gantt of each client's download / compute / upload in chosen rounds (default the first
    three), one panel per arm on a shared time axis, first seed only: where the round's time
    went. Dropped and failed clients are marked, not left blank."""
    clients = load_table(runs, "clients")
    clients = clients[clients["seed"] == clients["seed"].min()]
    chosen = rounds or sorted(clients["round"].unique())[:3]
    clients = clients[clients["round"].isin(chosen)]
    starts = load_table(runs, "rounds")[["arm", "seed", "round", "start_s"]]
    clients = clients.merge(starts, on=["arm", "seed", "round"], how="left")
    order = [a for a in _order(runs, baseline) if a in set(clients["arm"])]
    if not order:
        raise RunDirError(f"no client rows in round(s) {chosen} of the given runs")
    most = int(clients.groupby("arm").size().max())
    panel = float(np.clip(0.18 * most, *TIMELINE_PANEL))
    panel = min(panel, (TIMELINE_MAX_HEIGHT - 0.8) / len(order))
    fig, axes = plt.subplots(
        len(order), 1, figsize=(8, 0.8 + panel * len(order)), dpi=120, squeeze=False, sharex=True
    )
    ends = clients[["upload_end_s", "compute_end_s", "download_end_s", "start_s"]]
    unit, scale = time_unit(float(ends.max().max()))
    for ax, arm in zip(axes[:, 0], order, strict=True):
        frame = clients[clients["arm"] == arm].sort_values(["round", "client"])
        _timeline_panel(ax, frame.reset_index(drop=True), scale, panel / len(frame) >= 0.1)
        ax.set_title(f"{arm}: client timeline", fontsize=9)
    axes[-1, 0].set_xlabel(f"simulated time ({unit})")
    handles = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0, 0].legend(
        handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8
    )
    return fig


def bits_figure(runs: Runs, baseline: str | None = None) -> Figure:
    """Bits per trainable parameter per received client, per round and arm (real training)."""
    bits = metrics.bits_per_parameter(find_arms(runs))
    if bits.empty:
        raise RunDirError(
            "bits per parameter needs the parameter count from state-r*.npz, which only "
            "real-training runs write; none of the given arms has one"
        )
    fig, ax = _figure()
    order = _order(runs, baseline)
    colours = _colours(order)
    for arm, frame in _by_arm(bits, order):
        mean = frame.groupby("round")["bits_per_param"].mean()
        ax.plot(mean.index, mean.to_numpy(), marker="o", lw=2, color=colours[arm], label=arm)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("uplink bits per trainable parameter")
    ax.set_title("bits per parameter per round")
    ax.legend(fontsize=8)
    return fig


def final_points(runs: Runs, metric: str | None = None) -> pd.DataFrame:
    """Per arm, the means over seeds of its total uplink (MB) and of its final `metric`, and
    whether it is on the bytes/quality Pareto front."""
    evals = load_table(runs, "evals")
    metric, evals = metrics.select_metric(evals, metric, scenario_metric(find_arms(runs)))
    final = metrics.final_values(evals, metric)
    uplink = load_table(runs, "rounds").groupby(metrics.KEYS, sort=False)["uplink_bytes"].sum()
    per_seed = pd.concat([final.rename("final"), (uplink / 1e6).rename("uplink_mb")], axis=1)
    points = per_seed.groupby("arm", sort=False).mean().reset_index()
    lower = lower_is_better(metric)
    points["front"] = metrics.pareto_front(points["uplink_mb"], points["final"], lower)
    return points.assign(metric=metric)


def pareto_figure(runs: Runs, metric: str | None = None, baseline: str | None = None) -> Figure:
    """Final quality against total uplink (log x), one labelled point per arm (mean over
    seeds), the Pareto front joined by a line."""
    points = final_points(runs, metric)
    fig, ax = _figure()
    colours = _colours(_order(runs, baseline))
    front = points[points["front"]].sort_values("uplink_mb")
    ax.plot(front["uplink_mb"], front["final"], color="#999999", zorder=1, label="Pareto front")
    for row in points.itertuples():
        ax.scatter(row.uplink_mb, row.final, color=colours[row.arm], zorder=2)
        ax.annotate(
            row.arm,
            (row.uplink_mb, row.final),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    log_axis(ax.xaxis, points["uplink_mb"].min(), points["uplink_mb"].max())
    ax.set_xlabel("total uplink (MB, log scale)")
    metric = points["metric"].iloc[0]
    if lower_is_better(metric) and (points["final"] > 0).all():
        ax.set_yscale("log")  # losses crowd near their floor: spread them
        log_axis(ax.yaxis, points["final"].min(), points["final"].max())
    ax.set_ylabel(f"final {metric}")
    ax.set_title("final quality vs bytes sent")
    ax.legend(fontsize=8)
    return fig


CLIENT_PREFIX = "clients:"  # evals.csv views that summarise the per-client evaluation


def final_views(runs: Runs, metric: str | None = None) -> tuple[str, pd.DataFrame]:
    """(metric, per arm, seed and view its last value): the evals.csv views (group values and
    the clients: summaries) of the metric (default: the scenario's); empty when none."""
    views = load_views(runs)
    if views.empty:
        return metric or "", views
    metric, chosen = metrics.select_metric(views, metric, scenario_metric(find_arms(runs)))
    last = chosen.sort_values("round").groupby([*metrics.KEYS, "group"], sort=False)["value"]
    return metric, last.last().reset_index()


def group_figure(runs: Runs, metric: str | None = None, baseline: str | None = None) -> Figure:
    """The final metric per group value (evaluation.by), one bar per arm in each group (mean
    over seeds, whiskers: the seeds' range), the overall value as a dashed line per arm."""
    metric, finals = final_views(runs, metric)
    finals = finals[~finals["group"].str.startswith(CLIENT_PREFIX)] if len(finals) else finals
    if finals.empty:
        raise SimulatorError(
            "quality-by-group: no arm has per-group evaluations; run with evaluation.by = "
            "'group' (or 'label')"
        )
    order = [a for a in _order(runs, baseline) if a in set(finals["arm"])]
    colours = _colours(_order(runs, baseline))
    groups = list(dict.fromkeys(finals["group"]))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * len(groups) * len(order)), 4.2), dpi=120)
    ax.grid(alpha=0.3, axis="y")
    width = 0.8 / len(order)
    overall = metrics.final_values(load_table(runs, "evals"), metric)
    for i, arm in enumerate(order):
        per = finals[finals["arm"] == arm].groupby("group")["value"]
        mean, low, high = (per.agg(f).reindex(groups).to_numpy() for f in ("mean", "min", "max"))
        x = np.arange(len(groups)) + (i - (len(order) - 1) / 2) * width
        ax.bar(x, mean, width, color=colours[arm], label=arm)
        ax.errorbar(x, mean, [mean - low, high - mean], fmt="none", ecolor="#333333", lw=1)
        ax.axhline(overall.loc[arm].mean(), color=colours[arm], lw=1, ls="--")
    ax.set_xticks(np.arange(len(groups)), groups, rotation=30 if len(groups) > 6 else 0)
    ax.set_ylabel(f"final {metric}")
    ax.set_title(f"final {metric} per group (dashed: overall)")
    ax.legend(fontsize=8)
    return fig


def client_figure(runs: Runs, metric: str | None = None, baseline: str | None = None) -> Figure:
    """Each client's final metric on its own held-out shard, sorted from worst to best (one
    line per arm, first seed): how evenly the global model serves the clients."""
    arms = find_arms(runs)
    values = load_client_evals(runs)
    if values.empty:
        raise SimulatorError(
            "quality-by-client: no arm evaluated its clients; run with evaluation.clients_every"
        )
    metric, chosen = metrics.select_metric(values, metric, scenario_metric(arms))
    first = chosen[chosen["seed"] == chosen["seed"].min()]
    last = first[first["round"] == first.groupby("arm")["round"].transform("max")]
    fig, ax = _figure()
    colours = _colours(_order(runs, baseline))
    lower = lower_is_better(metric)
    for arm, frame in _by_arm(last, _order(runs, baseline)):
        ordered = np.sort(frame["value"].to_numpy(float))
        worst_first = ordered[::-1] if lower else ordered
        share = np.arange(1, len(ordered) + 1) / len(ordered)
        ax.plot(share, worst_first, marker="o", ms=3, lw=2, color=colours[arm], label=arm)
    ax.set_xlabel("share of clients, worst first")
    ax.set_ylabel(f"final {metric} on the client's held-out shard")
    ax.set_title(f"per-client {metric} (seed {int(first['seed'].min())})")
    ax.legend(fontsize=8)
    return fig


# kind -> figure of (runs, metric=None, baseline=None)
KINDS: dict[str, Callable[..., Figure]] = {
    "quality-time": lambda runs, metric=None, baseline=None: quality_figure(
        runs, "time", metric, baseline
    ),
    "quality-bytes": lambda runs, metric=None, baseline=None: quality_figure(
        runs, "bytes", metric, baseline
    ),
    "round-cdf": lambda runs, metric=None, baseline=None: round_cdf_figure(runs, baseline),
    "timeline": lambda runs, metric=None, baseline=None: timeline_figure(runs, None, baseline),
    "bits": lambda runs, metric=None, baseline=None: bits_figure(runs, baseline),
    "pareto": pareto_figure,
    "quality-by-group": group_figure,
    "quality-by-client": client_figure,
}


def writable(out: str | Path, folder: bool) -> Path:
    """Make `out` ready to write as a folder (`folder`) or as a file in its folder; a path of
    the wrong kind (a file where a folder is needed, a folder where a file is, a file among its
    parents) is a clear error before anything is computed."""
    out = Path(out)
    if folder and out.exists() and not out.is_dir():
        raise SimulatorError(f"--out {out}: is a file; name a folder (the report writes several)")
    if not folder and out.is_dir():
        raise SimulatorError(f"--out {out}: is a folder; name a file in it, e.g. {out / 'fig.png'}")
    if not folder and out.suffix.lower() not in SUFFIXES:
        raise SimulatorError(f"--out {out}: name a .png or .svg file, e.g. {out}.png")
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None and blocking != out:
        raise SimulatorError(f"--out {out}: {blocking} is a file, not a folder; choose another")
    (out if folder else out.parent).mkdir(parents=True, exist_ok=True)
    return out


def save(fig: Figure, out: str | Path) -> Path:
    """Write a figure (format from the suffix: .png or .svg) and release it."""
    out = writable(out, folder=False)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
