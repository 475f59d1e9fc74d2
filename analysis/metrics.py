"""Metrics over tidy run frames: time and uplink to a target, ratios against a baseline,
latency breakdowns, straggler attribution, energy, bits per parameter, Pareto fronts and
confidence intervals over seeds.

Everything is computed from the run directory's CSVs on the simulated clock; a target an arm
never reached stays NaN (never extrapolated), and so does every ratio that depends on it.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import stats

from analysis.runs import Arm, parameter_count, read_table
from simulator.errors import SimulatorError
from simulator.recorder import lower_is_better

log = logging.getLogger(__name__)

KEYS = ["arm", "seed"]
PHASES = ("download", "compute", "upload")


def select_metric(
    evals: pd.DataFrame, metric: str | None = None, default: str | None = None
) -> tuple[str, pd.DataFrame]:
    """The named metric and its rows; without one, `default` (the scenario's own metric) when it
    was evaluated, else the first evaluated, as the summary does."""
    if not metric:
        evaluated = set(evals["metric"])
        metric = default if default in evaluated else str(evals["metric"].iloc[0])
    chosen = evals[evals["metric"] == metric]
    if chosen.empty:
        known = ", ".join(sorted(evals["metric"].unique()))
        raise SimulatorError(f"--metric: no evaluations of {metric!r}; evaluated: {known}")
    return metric, chosen


def final_values(evals: pd.DataFrame, metric: str) -> pd.Series:
    """Per arm and seed (the index), the last evaluation of `metric`."""
    chosen = evals[evals["metric"] == metric].sort_values("round")
    return chosen.groupby(KEYS, sort=False)["value"].last()


def to_target(evals: pd.DataFrame, target: float, metric: str | None = None) -> pd.DataFrame:
    """Per arm and seed: round, simulated time and cumulative uplink bytes of the first
    evaluation that reached `target` (NaN when never reached); lower-is-better by name."""
    metric, chosen = select_metric(evals, metric)
    hit = chosen["value"] <= target if lower_is_better(metric) else chosen["value"] >= target
    first = chosen[hit].sort_values("round").groupby(KEYS, sort=False).head(1)
    arms = chosen[KEYS].drop_duplicates()
    out = arms.merge(first[[*KEYS, "round", "time_s", "uplink_bytes_cum"]], on=KEYS, how="left")
    out = out.rename(columns={"uplink_bytes_cum": "uplink_bytes"})
    return out.assign(reached=out["time_s"].notna(), metric=metric, target=target)


def against_baseline(reached: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Ratios of each arm to the baseline arm of the same seed (common random numbers):
    `bytes_ratio` = baseline bytes / arm bytes ("N× less uplink"), `time_reduction_pct` =
    100 · (1 − arm time / baseline time) ("X % faster")."""
    if baseline not in set(reached["arm"]):
        known = ", ".join(sorted(set(reached["arm"])))
        raise SimulatorError(f"--baseline: arm {baseline!r} is not among the arms ({known})")
    base = reached[reached["arm"] == baseline][["seed", "time_s", "uplink_bytes"]]
    both = reached.merge(base, on="seed", how="left", suffixes=("", "_base"))
    return both.assign(
        bytes_ratio=both["uplink_bytes_base"] / both["uplink_bytes"],
        time_reduction_pct=100.0 * (1.0 - both["time_s"] / both["time_s_base"]),
    ).drop(columns=["time_s_base", "uplink_bytes_base"])


def latency_breakdown(clients: pd.DataFrame, rounds: pd.DataFrame) -> pd.DataFrame:
    """Per arm, seed and round: download / compute / upload / waiting seconds of the straggler
    (`slowest_client`) and the fleet mean over clients that finished (`status == ok`); waiting
    is the rest of the round, so each client's four parts add up to the round's duration."""
    ok = clients[clients["status"] == "ok"].copy()
    for phase in PHASES:
        ok[phase] = ok[f"{phase}_end_s"] - ok[f"{phase}_start_s"]
    cols = [*KEYS, "round", "duration_s", "slowest_client"]
    ok = ok.merge(rounds[cols], on=[*KEYS, "round"])
    ok["waiting"] = ok["duration_s"] - ok[list(PHASES)].sum(axis=1)
    parts = [*PHASES, "waiting"]
    fleet = ok.groupby([*KEYS, "round"], sort=False)[parts].mean().add_prefix("fleet_")
    slow = ok[ok["client"] == ok["slowest_client"]].set_index([*KEYS, "round"])[parts]
    return fleet.join(slow.add_prefix("straggler_")).reset_index()


def straggler_phases(rounds: pd.DataFrame) -> pd.DataFrame:
    """How many rounds each phase made the straggler slowest, per arm (summed over seeds)."""
    return pd.crosstab(rounds["arm"], rounds["slowest_phase"].fillna("none"))


def energy_per_round(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per arm and seed: mean over rounds of the fleet-mean and of the straggler-max energy (J)."""
    return (
        rounds.groupby(KEYS, sort=False)[["energy_j_mean", "energy_j_max"]]
        .mean()
        .rename(columns={"energy_j_mean": "energy_j_fleet", "energy_j_max": "energy_j_straggler"})
        .reset_index()
    )


def bits_per_parameter(arms: list[Arm]) -> pd.DataFrame:
    """Per arm, seed and round: 8 · uplink bytes per received client / P, where P is the
    arm's trainable parameter count (runs.parameter_count), or that of the same arm of another
    seed of the same scenario when this one no longer has it (same method, same adapter).
    Arms without any (surrogate runs) are left out with a logged reason: their payload sizes
    are modelled, not tied to a model."""
    counts = {arm: parameter_count(arm) for arm in arms}
    known = {(a.scenario, a.arm): n for a, n in counts.items() if n is not None}
    frames = []
    for arm, params in counts.items():
        params = params or known.get((arm.scenario, arm.arm))
        if params is None:
            log.info("%s: no parameter count recorded; bits/parameter left out", arm)
            continue
        rounds = read_table(arm, "rounds")
        per_client = rounds["uplink_bytes"] / rounds["received"].where(rounds["received"] > 0)
        frames.append(rounds[[*KEYS, "round"]].assign(bits_per_param=8.0 * per_client / params))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pareto_front(bytes_: pd.Series, quality: pd.Series, lower_better: bool = False) -> pd.Series:
    """True where no other point has fewer-or-equal bytes and better-or-equal quality with at
    least one strictly better (the arms worth considering on a bytes/quality trade-off)."""
    q = -quality.to_numpy(float) if lower_better else quality.to_numpy(float)
    b = bytes_.to_numpy(float)
    dominated = [
        bool(np.any((b <= b[i]) & (q >= q[i]) & ((b < b[i]) | (q > q[i])))) for i in range(len(b))
    ]
    return pd.Series(~np.array(dominated, dtype=bool), index=bytes_.index)


def mean_ci(values: pd.Series | list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its t confidence interval (n − 1 df); NaN half-width for a single
    value (no interval); both NaN if any value is NaN, so a seed that never reached a target
    makes the mean "not reached" instead of silently averaging the lucky seeds."""
    x = pd.Series(values, dtype=float).to_numpy()
    if x.size == 0 or np.isnan(x).any():
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def json_pair(value: tuple[float, float], scale: float = 1.0) -> list[float | None]:
    """A (mean, CI half-width) as JSON, divided by `scale`: NaN (not reached, one seed) is null."""
    return [None if math.isnan(v) else v / scale for v in value]
