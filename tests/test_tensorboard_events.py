"""`fstq-sim run --tensorboard DIR` writes every metric per arm, against rounds and simulated
seconds, read back with TensorBoard's own event reader."""

from __future__ import annotations

import csv
import sys

import pytest
from conftest import scenario_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from simulator.cli import main

METHODS = [
    {"name": "dense", "payload_mb": 1.0, "compute_s": 2.0},
    {"name": "small", "payload_mb": 0.25, "compute_s": 2.0},
]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _events(folder):
    board = EventAccumulator(str(folder))
    board.Reload()
    return board


def test_run_writes_every_metric_per_arm_by_round_and_simulated_seconds(write_scenario, tmp_path):
    raw = scenario_dict(methods=METHODS, server={"rounds": 4})
    out, logs = tmp_path / "run", tmp_path / "tb"
    args = ["run", str(write_scenario(raw)), "--out", str(out), "--quiet", "--no-cache"]
    assert main([*args, "--tensorboard", str(logs)]) == 0
    assert sorted(p.name for p in logs.iterdir()) == ["dense", "small"]
    for arm in ("dense", "small"):
        board = _events(logs / arm)
        tags = set(board.Tags()["scalars"])
        evals = _rows(out / arm / "evals.csv")
        for metric in {e["metric"] for e in evals}:
            chosen = [e for e in evals if e["metric"] == metric]
            by_round = board.Scalars(f"eval/{metric}")
            assert [s.step for s in by_round] == [int(e["round"]) for e in chosen]
            assert [s.value for s in by_round] == pytest.approx([float(e["value"]) for e in chosen])
            assert [s.wall_time for s in by_round] == pytest.approx(
                [float(e["time_s"]) for e in chosen]
            )  # the simulated clock
            by_time = board.Scalars(f"eval/{metric}_vs_sim_s")
            assert [s.step for s in by_time] == [round(float(e["time_s"])) for e in chosen]
        rounds = _rows(out / arm / "rounds.csv")
        uplink = board.Scalars("round/uplink_bytes")
        assert [s.value for s in uplink] == [float(r["uplink_bytes"]) for r in rounds]
        assert [s.step for s in uplink] == [1, 2, 3, 4]
        durations = board.Scalars("round/duration_s_vs_sim_s")
        assert [s.step for s in durations] == [round(float(r["end_s"])) for r in rounds]
        assert {"round/energy_j_mean", "round/received", "round/dropped"} <= tags
        assert not {"round/round", "round/start_s", "round/slowest_client"} & tags


def test_tensorboard_under_a_file_is_a_clear_error(write_scenario, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    scenario = write_scenario(scenario_dict())
    args = ["run", str(scenario), "--out", str(tmp_path / "run"), "--quiet", "--no-cache"]
    assert main([*args, "--tensorboard", str(tmp_path / "taken")]) == 2
    assert "taken is a file; name a folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_without_the_tensorboard_package_the_error_names_the_extra(
    write_scenario, tmp_path, capsys, monkeypatch
):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)  # as in an install without the extra
    scenario = write_scenario(scenario_dict())
    args = ["run", str(scenario), "--out", str(tmp_path / "run"), "--quiet", "--no-cache"]
    assert main([*args, "--tensorboard", str(tmp_path / "tb")]) == 2
    assert "pip install 'fstq-sim[tensorboard]'" in capsys.readouterr().err
