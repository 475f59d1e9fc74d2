"""bench/report.py: docs/BENCHMARKS.md is what the committed bench/results JSON renders to."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from types import ModuleType

import pytest
from conftest import PROJECT_ROOT

BENCH = PROJECT_ROOT / "bench"


@pytest.fixture
def report(monkeypatch) -> ModuleType:
    """bench/report.py, imported the way `python bench/report.py` runs it (bench/ is no package)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("report")


@pytest.fixture
def results(report) -> dict[str, dict]:
    return report.load(report.RESULTS)


@pytest.fixture
def results_dir(tmp_path):
    """A copy of the committed results to break."""
    for path in (BENCH / "results").glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_document_matches_the_committed_results(report, results):
    assert report.render(results) == report.DOC.read_text(), "run python bench/report.py"


def test_check_mode_passes_on_the_committed_document():
    done = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_verdict_margins(report):
    assert report.verdict(60_000, 50_000) == "yes"
    assert report.verdict(51_046, 50_000) == "yes, narrowly"
    assert report.verdict(49_999, 50_000) == "**no**"
    assert report.verdict(0.021, 0.1, at_most=True) == "yes"
    assert report.verdict(0.098, 0.1, at_most=True) == "yes, narrowly"
    assert report.verdict(0.2, 0.1, at_most=True) == "**no**"


SLOW_ENGINE = {
    "command": "python bench/engine.py",
    "clients": 10,
    "per_round": 2,
    "rounds": 3,
    "client_rounds": 6,
    "host_seconds_all": [1.5],
    "host_seconds_median": 1.5,
    "client_rounds_per_s": 4,
    "peak_rss_mb": 2048.0,
    "target_client_rounds_per_s": 50_000,
    "target_peak_mb": 1024,
}


def test_unmet_targets_are_marked_no(report):
    assert [row.met for row in report.engine_rows(SLOW_ENGINE)] == ["**no**", "**no**"]


def test_the_document_says_plainly_when_a_target_is_not_met(report, results):
    text = report.render({**results, "engine": SLOW_ENGINE})
    assert "| **4 client-rounds/s** (median of 1 runs: 1.50 s for 6 client-rounds) |" in text
    assert "| ≥ 50,000 (#2) | **no** |" in text
    assert "**Target not met:** engine, surrogate client-rounds" in text
    assert "Every target with a recorded figure is met." not in text


def test_wall_time_is_totalled_against_ten_minutes(report, results):
    each = 500.0 / len(results)  # one script per benchmark, 500 s in all
    timed = {name: {**result, "wall_s": each} for name, result in results.items()}
    total = each * len(timed)
    row = report.wall_row(timed)
    assert (row.measured, row.met) == (f"**{total:.0f} s** ({total / 60:.1f} min)", "yes")
    timed["training"]["wall_s"] = 400.0
    assert report.wall_row(timed).met == "**no**"
    assert "wall time: 400 s" in report.render(timed)


def test_missing_wall_time_is_not_recorded(report, results):
    del results["engine"]["wall_s"]  # as in results written before wall times were kept
    row = report.wall_row(results)
    assert row.met == "not recorded"
    assert "engine.json" in row.measured


def test_missing_file_is_named(report, results_dir):
    (results_dir / "engine.json").unlink()
    with pytest.raises(report.ReportError, match=r"engine\.json is missing"):
        report.load(results_dir)


def test_garbled_file_is_named(report, results_dir):
    (results_dir / "traces.json").write_text('{"calls_per_s": ')
    with pytest.raises(report.ReportError, match=r"traces\.json is not valid JSON"):
        report.load(results_dir)


def test_missing_field_names_the_file(report, results):
    codecs = {k: v for k, v in results["codecs"].items() if k != "fisher_overhead"}
    with pytest.raises(report.ReportError, match=r"codecs\.json lacks or garbles a field"):
        report.render({**results, "codecs": codecs})


def test_without_gpu_results_the_document_says_so(report, results):
    gpu = report.render(results).split("\n## GPU\n", 1)[1]
    assert gpu.lstrip().startswith("No CUDA GPU was available to this project")


def test_gpu_results_get_their_own_section(report, results_dir):
    shutil.copy(results_dir / "codecs.json", results_dir / "gpu-codecs.json")
    text = report.render(report.load(results_dir))
    assert "No CUDA GPU" not in text
    gpu = text.split("\n## GPU\n", 1)[1]
    assert "### GPU: Codecs, Fisher overhead" in gpu
    assert "`bench/results/gpu-codecs.json`" in gpu
    assert "| **fstq** |" in gpu


def test_gpu_result_of_an_unknown_benchmark_is_an_error(report, results_dir):
    (results_dir / "gpu-quickstart.json").write_text(json.dumps({"command": "x"}))
    with pytest.raises(report.ReportError, match=r"gpu-quickstart\.json"):
        report.render(report.load(results_dir))


def test_strategies_where_no_arm_reaches_the_target(report, results):
    strategies = json.loads(json.dumps(results["strategies"]))
    for arms in strategies["results"].values():
        for arm in arms.values():
            arm.update(time_to_target_s=None, uplink_gb_to_target=None)
    (row,) = report.strategies_rows(strategies)
    assert row.measured == "FedAvg under sync **— h**; no arm reached it"
    assert "| sync | fedavg | 50 | 6893 | 15024 | 15228 | — | — |" in report.render(
        {**results, "strategies": strategies}
    )
