"""Run directories: determinism, resume after interruption, refusal to overwrite, summary."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import (
    PROJECT_ROOT,
    STRATEGY_SCENARIOS,
    hetero_dict,
    interrupt_at_append,
    tiny_run_overrides,
)

from simulator.errors import RunDirError
from simulator.experiment import load_resumable, prepare_out, run_scenario, verify_arms
from simulator.recorder import SCHEMA_VERSION
from simulator.rounds import COUNTED
from simulator.scenario import load_scenario

TABLES = ("rounds.csv", "clients.csv", "evals.csv", "summary.json", "checkpoint.json")


def _hetero(write_scenario) -> tuple[Path, dict]:
    raw = hetero_dict()
    return write_scenario(raw), raw


def _run(path: Path, out: Path) -> list[Path]:
    scenario = load_scenario(path)
    prepare_out(out, path, scenario)
    return run_scenario(scenario, out, progress=False)


def test_same_scenario_and_seed_give_byte_identical_files(write_scenario, tmp_path):
    path, _ = _hetero(write_scenario)
    a = _run(path, tmp_path / "a")
    b = _run(path, tmp_path / "b")
    for fa, fb in zip(a, b, strict=True):
        for name in TABLES:
            assert (fa / name).read_bytes() == (fb / name).read_bytes(), name
    other = load_scenario(path, ["seed=8"])
    c = run_scenario(other, tmp_path / "c", progress=False)
    assert (c[0] / "clients.csv").read_bytes() != (a[0] / "clients.csv").read_bytes()


def test_arms_share_selection_and_dropouts(write_scenario, tmp_path):
    path, _ = _hetero(write_scenario)
    dense, small = _run(path, tmp_path / "a")
    first = [line.split(",")[:2] for line in (dense / "clients.csv").read_text().splitlines()]
    second = [line.split(",")[:2] for line in (small / "clients.csv").read_text().splitlines()]
    assert first[:7] == second[:7]  # header + round 1: same clients in the same order


def test_resume_after_interruption_gives_identical_files(write_scenario, tmp_path, monkeypatch):
    path, _ = _hetero(write_scenario)
    reference = _run(path, tmp_path / "ref")

    # arm 1 complete (1 + 8 appends); arm 2 (1 + 3 appends) crashes in its fourth round
    interrupt_at_append(monkeypatch, 9 + 5, lambda: _run(path, tmp_path / "cut"))
    cut = tmp_path / "cut"
    assert not (cut / "small" / "summary.json").exists()
    rows_kept = (cut / "small" / "rounds.csv").read_text().splitlines()
    assert len(rows_kept) == 1 + 3  # header + 3 finished rounds survive the crash
    resumed = run_scenario(load_resumable(cut)[0], cut, resume=True, progress=False)
    for fa, fb in zip(reference, resumed, strict=True):
        for name in TABLES:
            assert (fa / name).read_bytes() == (fb / name).read_bytes(), (fa.name, name)
    manifest = json.loads((cut / "small" / "manifest.json").read_text())
    assert len(manifest["resumed_at"]) == 1 and manifest["host_end"]


def test_existing_results_are_not_overwritten(write_scenario, tmp_path):
    path, _ = _hetero(write_scenario)
    _run(path, tmp_path / "a")
    with pytest.raises(RunDirError, match="--resume"):
        _run(path, tmp_path / "a")


def test_summary_targets_and_layout(write_scenario, tmp_path):
    path, _ = _hetero(write_scenario)
    dense, _ = _run(path, tmp_path / "a")
    summary = json.loads((dense / "summary.json").read_text())
    assert summary["mode"] == "surrogate" and summary["rounds"] == 8
    assert summary["strategy"] == "sync"
    by_target = {t["target"]: t for t in summary["targets"]}
    assert by_target[0.99]["reached"] is False and by_target[0.99]["time_s"] is None
    evals = (dense / "evals.csv").read_text().splitlines()
    assert evals[0] == "round,time_s,uplink_bytes_cum,metric,value,source,group"
    assert [line.split(",")[0] for line in evals[1:]] == ["0", "2", "4", "6", "8"]
    hit = by_target[0.5]
    if hit["reached"]:
        row = next(line.split(",") for line in evals[1:] if float(line.split(",")[4]) >= 0.5)
        assert hit["time_s"] == float(row[1]) and hit["uplink_bytes"] == int(row[2])
    for name in ("manifest.json", "scenario.json"):
        assert (dense / name).exists()
    manifest = json.loads((dense / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["seed"] == 7
    assert "numpy" in manifest["packages"]


@pytest.mark.parametrize("name", STRATEGY_SCENARIOS)
def test_shipped_strategy_scenarios_run_in_surrogate_mode(name, tmp_path, request):
    if name == "mahimahi-replay":
        request.getfixturevalue("shared_traces")
    path = PROJECT_ROOT / "scenarios" / f"{name}.toml"
    scenario = load_scenario(path, tiny_run_overrides(name, {}))
    for arm in run_scenario(scenario, tmp_path / name, progress=False):
        summary = json.loads((arm / "summary.json").read_text())
        assert summary["rounds"] == 3 and summary["complete"]
        with open(arm / "clients.csv", newline="") as fh:
            clients = list(csv.DictReader(fh))
        assert {int(c["round"]) for c in clients} == {1, 2, 3}
        assert {c["status"] for c in clients} <= set(COUNTED) | {"ok"}
        # versions are FedBuff's: every client-round trained on one, none elsewhere
        assert {c["version"] == "" for c in clients} == {name != "fedbuff"}


# --- issue 23: a resumed arm continues the scenario it started with, or says what differs ----


def _cut(path: Path, out: Path, monkeypatch) -> None:
    """arm `dense` complete, arm `small` interrupted after 4 of its 8 rounds."""
    interrupt_at_append(monkeypatch, 9 + 5, lambda: _run(path, out))


def _edit(path: Path, change) -> None:
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def _resume(out: Path) -> list[Path]:
    return run_scenario(load_resumable(out)[0], out, resume=True, progress=False)


def _snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_refuses_an_edited_scenario_naming_the_key(write_scenario, tmp_path, monkeypatch):
    path, _ = _hetero(write_scenario)
    out = tmp_path / "cut"
    _cut(path, out, monkeypatch)
    _edit(out / "scenario.json", lambda raw: raw["methods"][1].update(payload_mb=8.0))
    before = _snapshot(out)
    with pytest.raises(RunDirError, match=r"methods\[1\]\.payload_mb \(0\.5 then, 8\.0 now\)"):
        _resume(out)
    assert _snapshot(out) == before  # the record of the original scenario is kept


def test_resume_refuses_fewer_rounds_than_already_done(write_scenario, tmp_path, monkeypatch):
    path, _ = _hetero(write_scenario)
    out = tmp_path / "cut"
    _cut(path, out, monkeypatch)
    _edit(out / "scenario.json", lambda raw: raw["server"].update(rounds=2))
    with pytest.raises(RunDirError, match=r"server\.rounds \(8 then, 2 now\)"):
        _resume(out)
    # the arms' own records edited the same way: their manifests' hashes say so
    for arm in ("dense", "small"):
        _edit(out / arm / "scenario.json", lambda raw: raw["server"].update(rounds=2))
    with pytest.raises(RunDirError, match=r"dense/scenario\.json: changed since the arm started"):
        _resume(out)
    # folders written before the hashes existed: the rounds done still are checked
    for arm in ("dense", "small"):
        _edit(out / arm / "manifest.json", lambda raw: raw.pop("scenario_sha256"))
    with pytest.raises(RunDirError, match="dense: has done 8 rounds, more than server.rounds = 2"):
        _resume(out)


def test_resume_refuses_an_arm_folder_of_another_scenario(write_scenario, tmp_path, monkeypatch):
    path, _ = _hetero(write_scenario)
    out = tmp_path / "cut"
    _cut(path, out, monkeypatch)
    other = load_resumable(out)[0].model_copy(update={"seed": 8})
    run_scenario(other, tmp_path / "other", progress=False)
    shutil.rmtree(out / "small")
    shutil.copytree(tmp_path / "other" / "small", out / "small")
    with pytest.raises(RunDirError, match=r"small: started with another .* seed \(8 then, 7 now\)"):
        _resume(out)
    # an arm folder under another arm's name
    shutil.rmtree(out / "small")
    shutil.copytree(out / "dense", out / "small")
    with pytest.raises(RunDirError, match="holds arm 'dense', which is not the arm 'small'"):
        _resume(out)


def test_committed_results_resume_checks_pass(tmp_path):
    """Run directories written before the marker and the hashes still verify as themselves."""
    for folder in sorted(PROJECT_ROOT.glob("results/*/seed-0")):
        copy = tmp_path / folder.parent.name
        shutil.copytree(folder, copy)
        scenario, _ = load_resumable(copy)
        verify_arms(copy, scenario)
        _edit(copy / "scenario.json", lambda raw: raw["server"].update(rounds=1))
        with pytest.raises(RunDirError, match=r"server\.rounds \(\d+ then, 1 now\)"):
            verify_arms(copy, load_resumable(copy)[0])
