"""bench/common.py: every benchmark's JSON carries its host and its script's wall time."""

from __future__ import annotations

import importlib
import json

from conftest import PROJECT_ROOT


def test_save_adds_host_and_wall_time(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "bench"))
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(common, "STARTED", common.time.perf_counter() - 2.0)
    path = common.save("demo", {"command": "python bench/demo.py", "rate": 3})
    saved = json.loads(path.read_text())
    assert path == tmp_path / "results" / "demo.json"
    assert saved["rate"] == 3
    assert 2.0 <= saved["wall_s"] < 60.0
    assert saved["host"]["cpus"] >= 1
    assert [p.name for p in path.parent.iterdir()] == ["demo.json"]


def test_save_never_touches_another_writers_temporary_file(monkeypatch, tmp_path):
    """Two benchmarks saving the same name at once: neither writes through the other's
    temporary file (the old fixed `demo.json.tmp` was overwritten and renamed away)."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "bench"))
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    theirs = tmp_path / "demo.json.tmp"
    theirs.write_text("half of another run's result")
    path = common.save("demo", {"rate": 4})
    assert json.loads(path.read_text())["rate"] == 4
    assert theirs.read_text() == "half of another run's result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json", "demo.json.tmp"]
