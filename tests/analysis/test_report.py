"""Every number of a report equals the metric computed directly from the CSVs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from rundirs import hand_run, hand_sweep

from analysis import report
from simulator.errors import SimulatorError


def _csv(folder, table):
    return pd.read_csv(folder / f"{table}.csv")


def test_single_seed_report_numbers_from_the_csvs(tmp_path):
    run = hand_run(tmp_path)
    md, page = report.write_report(run, tmp_path / "out", "dense", 0.6)
    text = md.read_text()
    for arm in ("dense", "small"):
        rounds, evals = _csv(run / arm, "rounds"), _csv(run / arm, "evals")
        first = evals[evals["value"] >= 0.6].iloc[0]
        total = rounds["uplink_bytes"].sum() / 1e6
        row = next(line for line in text.splitlines() if line.startswith(f"| {arm} |"))
        assert f"| {first['time_s']:.1f} s | {first['uplink_bytes_cum'] / 1e6:.3f} MB |" in row
        assert f"| {evals['value'].iloc[-1]:.4f} | {total:.3f} MB |" in row
        assert f"| {rounds['duration_s'].mean():.1f} s |" in row
        assert (
            f"| {rounds['energy_j_mean'].mean():.1f} J | {rounds['energy_j_max'].mean():.1f} J |"
            in row
        )
    assert "| small | 1/1 reached | 10.0 s | 0.001 MB | 8.00 × | 50.0 % |" in text
    assert "| straggler: compute | straggler: upload |" in text and text.count("| 1 | 1 |") == 2
    # latency (fleet dl/compute/upload/wait, then straggler): see rundirs.write_arm
    assert "| dense | 1.0 s | 3.0 s | 3.0 s | 3.0 s | 1.0 s | 4.0 s | 5.0 s | 0.0 s |" in text
    assert "| small | 1.0 s | 2.0 s | 1.5 s | 0.5 s | 1.0 s | 2.0 s | 2.0 s | 0.0 s |" in text
    body = page.read_text()
    assert body.count("<table>") == 2
    assert body.count("data:image/png;base64,") == len(report.FIGURES) and "8.00 ×" in body
    assert all((tmp_path / "out" / f"{kind}.png").stat().st_size > 5_000 for kind in report.FIGURES)


def test_three_seeds_mean_and_ci_by_hand(tmp_path):
    comparison = report.compare(hand_sweep(tmp_path), "dense", 0.6)
    # final accuracy of dense over seeds: 0.70, 0.71, 0.72 -> mean 0.71, sd 0.01
    mean, half = comparison.table.loc["dense", "final"]
    assert mean == pytest.approx(0.71)
    assert half == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3))
    assert comparison.table.loc["small", "bytes_ratio"] == (8.0, 0.0)
    assert comparison.table.loc["dense", "seeds"] == "3/3 reached"
    assert comparison.table["pareto"].tolist() == [True, True]


def test_not_reached_stays_not_reached(tmp_path):
    run = hand_run(tmp_path)
    comparison = report.compare(run, "dense", 0.8)
    assert comparison.table.loc["small", "seeds"] == "0/1 reached"
    text = report.write_report(run, tmp_path / "out", "dense", 0.8)[0].read_text()
    row = next(line for line in text.splitlines() if line.startswith("| small |"))
    assert row.count("| not reached | not reached | n/a | n/a |") == 1


def test_fmt():
    assert report.fmt((2.0, float("nan")), 1.0, "s", 1) == "2.0 s"
    assert report.fmt((2e6, 1e5), 1e6, "MB", 2) == "2.00 ± 0.10 MB"
    assert report.fmt((float("nan"), float("nan")), 1.0, "s", 1) == "not reached"
    assert report.fmt((float("nan"), float("nan")), 1.0, "%", 1) == "n/a"


def test_unfinished_and_evaluation_less_arms_are_flagged(tmp_path):
    run = hand_run(tmp_path)
    (run / "small" / "summary.json").unlink()  # interrupted
    comparison = report.compare(run, "dense", 0.6)
    assert comparison.table.loc["small", "seeds"] == "1/1 reached, 1 unfinished"
    (note,) = comparison.notes
    assert note.startswith("Unfinished") and "small (seed 1" in note
    text = report.write_report(run, tmp_path / "out", "dense", 0.6)[0].read_text()
    assert "**Note:** Unfinished" in text
    evals = run / "small" / "evals.csv"
    evals.write_text(evals.read_text().splitlines()[0] + "\n")  # no evaluation yet
    assert (
        "Left out (no evaluations yet): small (seed 1"
        in report.compare(run, "dense", 0.6).notes[-1]
    )
    with pytest.raises(SimulatorError, match="arm 'small' has no accuracy evaluations"):
        report.compare(run, "small", 0.6)  # not "the baseline is not among the arms"
