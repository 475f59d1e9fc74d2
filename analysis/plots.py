"""Figures from run directories (matplotlib, headless); PNG or SVG by the output's suffix.

Each figure function takes runs (arm, run or sweep folders) and returns a Figure; `save` writes
it. Arms keep one Okabe-Ito colour across figures; seeds of an arm are drawn as a band.
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
from analysis.runs import Runs, find_arms, load_table
from simulator.errors import RunDirError
from simulator.recorder import lower_is_better

# Okabe-Ito (distinguishable with the common colour-vision deficiencies), then grey and brown so
# that up to ten arms (the headline comparison has nine) never share a colour.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#999999",
    "#8C564B",
)
PHASE_COLOURS = {"download": PALETTE[5], "compute": PALETTE[1], "upload": PALETTE[3]}


def time_unit(longest_s: float) -> tuple[str, float]:
    """A readable unit for a time axis that runs to longest_s seconds."""
    if longest_s < 120:
        return "seconds", 1.0
    if longest_s < 2 * 3600:
        return "minutes", 60.0
    return "hours", 3600.0


def _colours(arms: pd.Series) -> dict[str, str]:
    return {arm: PALETTE[i % len(PALETTE)] for i, arm in enumerate(pd.unique(arms))}


def _figure() -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.grid(alpha=0.3)
    return fig, ax


def _seed_band(ax: plt.Axes, frame: pd.DataFrame, x: str, scale: float, **style) -> None:
    """The mean over seeds as a step line and the seeds' min-max as a band, on the union of
    their x values (each seed holds its last evaluation until the next)."""
    grid = np.unique(frame[x].to_numpy(float))
    held = []
    for _, seed in frame.sort_values(x).groupby("seed"):
        at = np.searchsorted(seed[x].to_numpy(float), grid, side="right") - 1
        values = seed["value"].to_numpy(float)[np.clip(at, 0, None)]
        held.append(np.where(at >= 0, values, np.nan))
    held = np.array(held)
    ax.step(grid / scale, np.nanmean(held, axis=0), where="post", lw=2, **style)
    if len(held) > 1:
        lo, hi = np.nanmin(held, axis=0), np.nanmax(held, axis=0)
        ax.fill_between(grid / scale, lo, hi, step="post", alpha=0.2, color=style["color"])


def quality_figure(runs: Runs, against: str = "time", metric: str | None = None) -> Figure:
    """Quality against simulated wall-clock (`time`) or cumulative uplink bytes (`bytes`, log x),
    one line per arm, seeds as a min-max band."""
    evals = load_table(runs, "evals")
    metric, evals = metrics.select_metric(evals, metric)
    fig, ax = _figure()
    if against == "time":
        x, (unit, scale) = "time_s", time_unit(float(evals["time_s"].max()))
        ax.set_xlabel(f"simulated wall-clock ({unit})")
    else:
        x, scale, unit = "uplink_bytes_cum", 1e6, "MB"
        evals = evals[evals[x] > 0]  # round 0 has sent nothing: no place on a log axis
        ax.set_xscale("log")
        ax.set_xlabel("cumulative uplink (MB, log scale)")
    colours = _colours(evals["arm"])
    for arm, frame in evals.groupby("arm", sort=False):
        _seed_band(ax, frame, x, scale, color=colours[arm], label=arm)
    source = ", ".join(sorted(evals["source"].unique()))
    ax.set_ylabel(f"{metric} ({source})")
    what = "simulated wall-clock" if against == "time" else "cumulative uplink bytes"
    ax.set_title(f"{metric} vs {what}")
    ax.legend()
    return fig


def round_cdf_figure(runs: Runs) -> Figure:
    """Empirical CDF of round durations per arm (all seeds pooled): the straggler tail."""
    rounds = load_table(runs, "rounds")
    fig, ax = _figure()
    unit, scale = time_unit(float(rounds["duration_s"].max()))
    colours = _colours(rounds["arm"])
    for arm, frame in rounds.groupby("arm", sort=False):
        durations = np.sort(frame["duration_s"].to_numpy(float)) / scale
        share = np.arange(1, len(durations) + 1) / len(durations)
        ax.step(durations, share, where="post", lw=2, color=colours[arm], label=arm)
    ax.set_xlabel(f"round duration ({unit}, simulated)")
    ax.set_ylabel("fraction of rounds")
    ax.set_title("round-duration CDF")
    ax.legend()
    return fig


def timeline_figure(runs: Runs, rounds: list[int] | None = None) -> Figure:
    """Gantt of each client's download / compute / upload in chosen rounds (default the first
    three), one panel per arm, first seed only: where the round's time went."""
    clients = load_table(runs, "clients")
    clients = clients[clients["seed"] == clients["seed"].min()]
    chosen = rounds or sorted(clients["round"].unique())[:3]
    clients = clients[clients["round"].isin(chosen)]
    arms = list(pd.unique(clients["arm"]))
    if not arms:
        raise RunDirError(f"no client rows in round(s) {chosen} of the given runs")
    height = max(2.5, 0.25 * clients.groupby("arm").size().max())
    fig, axes = plt.subplots(len(arms), 1, figsize=(8, height * len(arms)), dpi=120, squeeze=False)
    unit, scale = time_unit(float(clients[["upload_end_s", "compute_end_s"]].max().max()))
    for ax, arm in zip(axes[:, 0], arms, strict=True):
        frame = clients[clients["arm"] == arm].sort_values(["round", "client"])
        labels = [f"r{r} c{c}" for r, c in zip(frame["round"], frame["client"], strict=True)]
        for phase, colour in PHASE_COLOURS.items():
            start, end = frame[f"{phase}_start_s"] / scale, frame[f"{phase}_end_s"] / scale
            ax.barh(range(len(frame)), end - start, left=start, color=colour, label=phase)
        ax.set_yticks(range(len(frame)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{arm}: client timeline")
        ax.set_ylabel("round, client")
        ax.grid(alpha=0.3, axis="x")
    axes[-1, 0].set_xlabel(f"simulated time ({unit})")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def bits_figure(runs: Runs) -> Figure:
    """Bits per trainable parameter per received client, per round and arm (real training)."""
    bits = metrics.bits_per_parameter(find_arms(runs))
    if bits.empty:
        raise RunDirError(
            "bits per parameter needs the parameter count from state-r*.npz, which only "
            "real-training runs write; none of the given arms has one"
        )
    fig, ax = _figure()
    colours = _colours(bits["arm"])
    for arm, frame in bits.groupby("arm", sort=False):
        mean = frame.groupby("round")["bits_per_param"].mean()
        ax.plot(mean.index, mean.to_numpy(), marker="o", lw=2, color=colours[arm], label=arm)
    ax.set_xlabel("round")
    ax.set_ylabel("uplink bits per trainable parameter")
    ax.set_title("bits per parameter per round")
    ax.legend()
    return fig


def final_points(runs: Runs, metric: str | None = None) -> pd.DataFrame:
    """Per arm, the means over seeds of its total uplink (MB) and of its final `metric`, and
    whether it is on the bytes/quality Pareto front."""
    evals = load_table(runs, "evals")
    metric, evals = metrics.select_metric(evals, metric)
    final = metrics.final_values(evals, metric)
    uplink = load_table(runs, "rounds").groupby(metrics.KEYS, sort=False)["uplink_bytes"].sum()
    per_seed = pd.concat([final.rename("final"), (uplink / 1e6).rename("uplink_mb")], axis=1)
    points = per_seed.groupby("arm", sort=False).mean().reset_index()
    lower = lower_is_better(metric)
    points["front"] = metrics.pareto_front(points["uplink_mb"], points["final"], lower)
    return points.assign(metric=metric)


def pareto_figure(runs: Runs, metric: str | None = None) -> Figure:
    """Final quality against total uplink (log x), one labelled point per arm (mean over
    seeds), the Pareto front joined by a line."""
    points = final_points(runs, metric)
    fig, ax = _figure()
    colours = _colours(points["arm"])
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
    ax.set_xlabel("total uplink (MB, log scale)")
    metric = points["metric"].iloc[0]
    if lower_is_better(metric) and (points["final"] > 0).all():
        ax.set_yscale("log")  # losses crowd near their floor: spread them
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(ticker.FormatStrFormatter("%.2g"))
    ax.set_ylabel(f"final {metric}")
    ax.set_title("final quality vs bytes sent")
    ax.legend()
    return fig


KINDS: dict[str, Callable[..., Figure]] = {
    "quality-time": lambda runs, metric=None: quality_figure(runs, "time", metric),
    "quality-bytes": lambda runs, metric=None: quality_figure(runs, "bytes", metric),
    "round-cdf": lambda runs, metric=None: round_cdf_figure(runs),
    "timeline": lambda runs, metric=None: timeline_figure(runs),
    "bits": lambda runs, metric=None: bits_figure(runs),
    "pareto": pareto_figure,
}


def save(fig: Figure, out: str | Path) -> Path:
    """Write a figure (format from the suffix: .png or .svg) and release it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
