"""Every number of a report equals the metric computed directly from the CSVs."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pandas as pd
import pytest
from rundirs import hand_run, hand_sweep

from analysis import report
from simulator.errors import SimulatorError


def _csv(folder, table):
    return pd.read_csv(folder / f"{table}.csv")


def _row(text, arm, lead):
    """The row of `arm` in the table under `lead`."""
    table = text.split(lead, 1)[1]
    return next(line for line in table.splitlines() if line.startswith(f"| {arm} |"))


def test_single_seed_report_numbers_from_the_csvs(tmp_path):
    run = hand_run(tmp_path)
    md, page, raw = report.write_report(run, tmp_path / "out", "dense", 0.6)
    text = md.read_text()
    table = pd.read_csv(raw).set_index("arm")
    for arm in ("dense", "small"):
        rounds, evals = _csv(run / arm, "rounds"), _csv(run / arm, "evals")
        first = evals[evals["value"] >= 0.6].iloc[0]
        total = rounds["uplink_bytes"].sum()
        row = _row(text, arm, "To the target")
        kb = first["uplink_bytes_cum"] / 1e3
        assert f"| {first['time_s']:.1f} s | {kb:.2f} kB |" in row
        assert f"| {evals['value'].iloc[-1]:.4f} | {total / 1e3:.2f} kB |" in row
        # the raw values, in SI units, are in report.csv
        assert table.loc[arm, "time_to_target_s_mean"] == first["time_s"]
        assert table.loc[arm, "uplink_to_target_bytes_mean"] == first["uplink_bytes_cum"]
        assert table.loc[arm, "total_uplink_bytes_mean"] == total
        assert table.loc[arm, "energy_per_round_fleet_j_mean"] == rounds["energy_j_mean"].mean()
        costs = _row(text, arm, "Round costs")
        mean_round = rounds["duration_s"].mean()
        assert costs.startswith(f"| {arm} | {mean_round:.{1 if mean_round >= 10 else 2}f} s |")
        assert "| 7.50 J | 12.0 J | compute 1/2, upload 1/2 |" in costs
    assert "| small | 1/1 reached | 10.0 s | 1.00 kB | 8.00 × | 50.0 % |" in text
    assert "| dense | 1/1 reached | 20.0 s | 8.00 kB | 1.00 × | 0.00 % |" in text
    # latency (fleet dl/compute/upload/wait, then straggler): see rundirs.write_arm
    assert (
        "| dense | 1.00 s | 3.00 s | 3.00 s | 3.00 s | 1.00 s | 4.00 s | 5.00 s | 0.00 s |" in text
    )
    assert (
        "| small | 1.00 s | 2.00 s | 1.50 s | 0.50 s | 1.00 s | 2.00 s | 2.00 s | 0.00 s |" in text
    )
    body = page.read_text()
    assert body.count("<table>") == 3
    assert body.count("data:image/png;base64,") == 4 and "8.00 ×" in body
    assert body.count("<figcaption>Figure ") == 4
    figures = [k for k in report.FIGURES if k != "bits" and k not in report.VIEW_FIGURES]
    assert all((tmp_path / "out" / f"{kind}.png").stat().st_size > 5_000 for kind in figures)


def test_every_column_is_explained_and_tables_stay_narrow(tmp_path):
    """Before: one 13-column table with an unexplained 'straggler: upload' column."""
    text = report.write_report(hand_run(tmp_path), tmp_path / "out", "dense", 0.6)[0].read_text()
    explained = {line[2:].split(":")[0] for line in text.splitlines() if line.startswith("- ")}
    for line in text.splitlines():
        if line.startswith("| arm | seeds") or line.startswith("| arm | mean round"):
            heads = [h.strip() for h in line.strip("|").split("|")][1:]
            assert len(heads) + 1 <= 9
            assert set(heads) <= explained, set(heads) - explained
    assert "straggler: upload" not in text


def test_header_names_scenario_version_seeds_and_date_and_figures_have_captions(tmp_path):
    sweep = hand_sweep(tmp_path)
    for folder in sweep.glob("seed-*/*"):
        manifest = folder / "manifest.json"
        data = json.loads(manifest.read_text())
        manifest.write_text(
            json.dumps(data | {"mode": "surrogate", "packages": {"fstq-sim": "9.9"}})
        )
    text = report.write_report(sweep, tmp_path / "out", "dense", 0.6)[0].read_text()
    assert "- Scenario: hand\n- fstq-sim: 9.9 (surrogate training)\n- Seeds: 1, 2, 3 (3)\n" in text
    assert f"- Written: {datetime.now(UTC):%Y-%m-%d}" in text
    assert "![quality-time](quality-time.png)\n\n*Figure 1: quality against simulated" in text
    assert "*Figure 4: each client's download" in text


def test_human_units_and_no_negative_zero():
    assert report.human((22_638_818.7, float("nan")), "time") == "6289 h"
    assert report.human((449_536.0e6, float("nan")), "bytes") == "450 GB"
    assert report.human((1_500.0, 30.0), "time") == "25.0 ± 0.5 min"
    assert report.human((-0.004, 0.001), "time") == "0.00 ± 0.00 s"  # not "-0.0 s"
    assert report.human((-1e-12, float("nan")), "pct") == "0.00 %"
    assert report.human((float("nan"), float("nan")), "time") == "not reached"
    assert report.human((float("nan"), float("nan")), "ratio") == "n/a"


def test_arms_of_two_scenarios_are_flagged(tmp_path):
    run = hand_run(tmp_path)
    manifest = run / "small" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"scenario": "hand-lte"}))
    comparison = report.compare(run, "dense", 0.6)
    assert comparison.notes == [
        "Arms of 2 scenarios compared as one (hand: dense; hand-lte: small): they may differ "
        "in more than the method (clients, network, data, rounds)"
    ]
    assert comparison.header[0] == "Scenario: hand, hand-lte"


def test_out_of_the_wrong_kind_is_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(SimulatorError, match=r"taken: is a file; name a folder"):
        report.write_report(hand_run(tmp_path), tmp_path / "taken", "dense", 0.6)


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
    row = _row(text, "small", "To the target")
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
