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
