"""Evaluation views in analysis: per-group and per-client rows beside the overall ones, older
run directories without them (schema 3) read and reported as before."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from rundirs import add_views, hand_run, write_scenario

from analysis import plots
from analysis.report import compare, write_report
from analysis.runs import find_arms, generations, load_client_evals, load_table, load_views

NEW_COLUMNS = {
    "evals": ("group",),
    "clients": ("train_loss_first", "train_loss_last", "tokens_trained", "flop"),
}


def _as_schema_3(run) -> None:
    """Rewrite every arm's tables without the columns schema 4 added."""
    for table, added in NEW_COLUMNS.items():
        for path in run.glob(f"*/{table}.csv"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame.drop(columns=list(added)).to_csv(path, index=False, lineterminator="\n")


def test_a_schema_3_run_reads_and_reports_as_before(tmp_path):
    new = hand_run(tmp_path / "new")
    old = hand_run(tmp_path / "old")
    _as_schema_3(old)
    (old / "dense" / "generations.json").write_text(
        json.dumps({"round": 2, "samples": [{"prompt": "p", "reference": "r", "answer": "a"}]})
    )
    for run in (new, old):
        write_scenario(run, ["dense", "small"])
    for table in ("evals", "clients"):
        a, b = load_table(new, table), load_table(old, table)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert load_views(old).empty and load_client_evals(old).empty
    assert generations(find_arms(old)[0])[0]["round"] == 2  # the old one-round format
    assert generations(find_arms(new)[0]) == []
    reports = {}
    for name, run in (("new", new), ("old", old)):
        out = tmp_path / f"report-{name}"
        write_report(run, out, "dense", 0.6)
        reports[name] = out
        assert sorted(p.name for p in out.glob("*.png")) == [
            "quality-bytes.png", "quality-time.png", "round-cdf.png", "timeline.png"
        ]  # fmt: skip
    md = (reports["old"] / "report.md").read_text()
    assert "per group" not in md and "Per-client" not in md
    assert (reports["old"] / "report.csv").read_text() == (
        reports["new"] / "report.csv"
    ).read_text()


def test_group_and_client_views_reach_the_report_and_figures(tmp_path):
    run = hand_run(tmp_path)
    write_scenario(run, ["dense", "small"])
    add_views(run)
    overall = load_table(run, "evals")
    assert set(overall["group"]) == {""} and len(overall) == 6  # views stay out of the metrics
    views = load_views(run)
    assert "NA" in set(views["group"])  # a group called NA is a name, not a missing value
    comparison = compare(run, "dense", 0.6)
    assert list(comparison.groups.columns) == ["de", "NA"]
    assert comparison.groups.loc["dense", "de"][0] == pytest.approx(0.8)  # final 0.7 + 0.1
    assert comparison.clients.loc["small", "clients:worst10"][0] == pytest.approx(0.45)
    out = tmp_path / "report"
    md = write_report(run, out, "dense", 0.6)[0].read_text()
    assert "Final accuracy per group value" in md
    assert "| dense | 0.8000 | 0.6000 |" in md
    assert "| small | 0.6500 | 0.4500 | 0.0500 |" in md  # mean, worst decile, spread
    assert (out / "quality-by-group.png").is_file() and (out / "quality-by-client.png").is_file()
    raw = pd.read_csv(out / "report.csv", keep_default_na=False)
    assert raw.loc[0, "final_group_NA_mean"] == pytest.approx(0.6)
    plots.save(plots.group_figure(run), tmp_path / "g.png")
    with pytest.raises(Exception, match="evaluation.by"):
        plots.group_figure(hand_run(tmp_path / "plain"))
