"""Engine timing with hand-computed expectations: phases, max-over-clients, dropout, offline."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, scenario_dict

from simulator.experiment import run_scenario
from simulator.scenario import load_scenario


def _rows(folder: Path, table: str) -> list[dict[str, str]]:
    with open(folder / f"{table}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _run(write_scenario, tmp_path, raw: dict) -> Path:
    scenario = load_scenario(write_scenario(raw))
    return run_scenario(scenario, tmp_path / "out", progress=False)[0]


def test_phases_of_identical_clients(write_scenario, tmp_path):
    # download 2 MB at 16 Mbps = 1 s; compute 2 s; upload 1 MB at 8 Mbps = 1 s
    arm = _run(write_scenario, tmp_path, scenario_dict())
    rounds = _rows(arm, "rounds")
    assert [float(r["duration_s"]) for r in rounds] == [4.0, 4.0, 4.0]
    assert [float(r["start_s"]) for r in rounds] == [0.0, 4.0, 8.0]
    first = _rows(arm, "clients")[0]
    times = [
        float(first[k])
        for k in (
            "download_start_s",
            "download_end_s",
            "compute_start_s",
            "compute_end_s",
            "upload_start_s",
            "upload_end_s",
        )
    ]
    assert times == [0.0, 1.0, 1.0, 3.0, 3.0, 4.0]
    # 1 W x 1 s + 4 W x 2 s + 2 W x 1 s
    assert float(first["energy_j"]) == pytest.approx(11.0)
    assert int(rounds[0]["uplink_bytes"]) == 4 * 1_000_000
    assert int(rounds[0]["downlink_bytes"]) == 4 * 2_000_000


def test_round_time_is_max_over_clients_with_device_speeds(write_scenario, tmp_path):
    devices = {
        name: {"tflops": [tf, tf], "p_compute_w": 1.0, "p_tx_w": 1.0, "p_rx_w": 1.0}
        for name, tf in (("slow", 1.0), ("mid", 2.0), ("fast", 4.0))
    }
    raw = scenario_dict(
        population={"clients": 3, "per_round": 3, "mix": {"slow": 1, "mid": 1, "fast": 1}},
        devices=devices,
        methods=[{"name": "w", "payload_mb": 1.0, "compute_tflop": 8.0}],
    )
    arm = _run(write_scenario, tmp_path, raw)
    clients = [c for c in _rows(arm, "clients") if c["round"] == "1"]
    compute = {
        c["device"]: float(c["compute_end_s"]) - float(c["compute_start_s"]) for c in clients
    }
    assert compute == {"slow": 8.0, "mid": 4.0, "fast": 2.0}
    first = _rows(arm, "rounds")[0]
    assert float(first["duration_s"]) == 1.0 + 8.0 + 1.0
    slow_client = next(c["client"] for c in clients if c["device"] == "slow")
    assert (first["slowest_client"], first["slowest_phase"]) == (slow_client, "compute")


def test_dropped_clients_send_nothing_and_do_not_hold_the_round(write_scenario, tmp_path):
    devices = {
        name: {"tflops": [tf, tf], "p_compute_w": 1.0, "p_tx_w": 1.0, "p_rx_w": 1.0}
        for name, tf in (("slow", 1.0), ("fast", 8.0))
    }
    raw = scenario_dict(
        population={"clients": 40, "per_round": 20, "mix": {"slow": 1, "fast": 1}},
        devices=devices,
        availability={"kind": "bernoulli", "p_drop": 0.5},
        server={"rounds": 6},
        methods=[{"name": "w", "payload_mb": 1.0, "compute_tflop": 8.0}],
    )
    arm = _run(write_scenario, tmp_path, raw)
    clients = _rows(arm, "clients")
    dropped = [c for c in clients if c["status"] == "dropped"]
    assert 0.3 < len(dropped) / len(clients) < 0.7
    assert all(c["download_start_s"] == "" and c["uplink_bytes"] == "0" for c in dropped)
    for r in _rows(arm, "rounds"):
        worked = [c for c in clients if c["round"] == r["round"] and c["status"] == "ok"]
        slow_worked = any(c["device"] == "slow" for c in worked)
        assert float(r["duration_s"]) == pytest.approx(10.0 if slow_worked else 3.0)
        assert int(r["received"]) == len(worked)
        assert int(r["dropped"]) == 20 - len(worked)


def test_offline_mid_phase_loses_the_round_and_records_partial_bytes(write_scenario, tmp_path):
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("client,start_s,end_s\n0,0,2.5\n1,0,3.5\n2,0,1000\n3,0,1000\n")
    raw = scenario_dict(
        availability={"kind": "sessions", "file": str(sessions)}, server={"rounds": 2}
    )
    arm = _run(write_scenario, tmp_path, raw)
    clients = {(c["round"], c["client"]): c for c in _rows(arm, "clients")}
    mid_compute = clients[("1", "0")]
    assert (mid_compute["status"], mid_compute["phase"]) == ("interrupted", "compute")
    assert float(mid_compute["compute_end_s"]) == 2.5 and mid_compute["upload_start_s"] == ""
    assert float(mid_compute["energy_j"]) == pytest.approx(1.0 * 1 + 4.0 * 1.5)
    mid_upload = clients[("1", "1")]
    assert (mid_upload["status"], mid_upload["phase"]) == ("interrupted", "upload")
    assert int(mid_upload["uplink_bytes"]) == 500_000  # 0.5 s of 8 Mbps
    first, second = _rows(arm, "rounds")
    assert float(first["duration_s"]) == 4.0 and first["interrupted"] == "2"
    assert first["received"] == "2"
    assert int(first["uplink_bytes"]) == 2 * 1_000_000 + 500_000
    # round 2 starts at 4 s when clients 0 and 1 are offline: only 2 and 3 are selected
    assert second["selected"] == "2"
    assert {c for (r, c) in clients if r == "2"} == {"2", "3"}


def test_paper_lte20_table_reproduced(tmp_path):
    scenario = load_scenario(PROJECT_ROOT / "scenarios" / "paper-lte20.toml", ["server.rounds=2"])
    expected = {
        "fedavg": 414.60,
        "qsgd-4bit": 107.90,
        "fedpaq": 332.93,
        "fedbat": 58.70,
        "fed-tome": 211.30,
        "fed-fstq": 67.29,
    }
    folders = run_scenario(scenario, tmp_path / "paper", progress=False)
    got = {}
    for folder in folders:
        rounds = _rows(folder, "rounds")
        got[folder.name] = round(float(rounds[1]["duration_s"]), 2)
        energy = {round(float(r["energy_j_mean"]), 2) for r in rounds}
        if folder.name == "fedavg":
            assert energy == {839.20}
        if folder.name == "fed-fstq":
            assert energy == {146.28}
    assert got == expected


def test_lost_uploads_are_counted_sent_but_not_received(write_scenario, tmp_path):
    raw = scenario_dict(faults={"drop": 0.5}, server={"rounds": 6})
    arm = _run(write_scenario, tmp_path, raw)
    clients = _rows(arm, "clients")
    lost = [c for c in clients if c["status"] == "lost"]
    assert 0 < len(lost) < len(clients)
    assert all(int(c["uplink_bytes"]) == 1_000_000 for c in lost)  # sent in full, then lost
    for r in _rows(arm, "rounds"):
        mine = [c for c in clients if c["round"] == r["round"]]
        assert int(r["lost"]) == sum(c["status"] == "lost" for c in mine)
        assert int(r["received"]) == sum(c["status"] == "ok" for c in mine)
        assert float(r["duration_s"]) == 4.0  # a lost upload still took its time


def test_corrupt_faults_need_real_messages(write_scenario):
    with pytest.raises(Exception, match="need training.mode = 'real'"):
        load_scenario(write_scenario(scenario_dict(faults={"corrupt": 0.1})))


def test_the_engine_says_what_it_waits_for(write_scenario):
    """A run waiting on training or on someone to come online says so (before: 0 % and no
    message), and jumping over an offline stretch lands where looking every 60 s would."""
    from simulator.engine import Engine
    from simulator.training.surrogate import SurrogateTrainer
    from simulator.world import build_world

    raw = scenario_dict(
        population={"clients": 2, "per_round": 2, "mix": {"jetson_orin_nano": 1.0}},
        availability={"kind": "sessions", "mean_online_s": 30.0, "mean_offline_s": 20_000.0},
        server={"rounds": 2},
    )
    scenario = load_scenario(write_scenario(raw))
    world, method = build_world(scenario), scenario.methods[0]
    said, starts = [], []
    engine = Engine(world, method, SurrogateTrainer(scenario, method), said.append)
    engine.run(1, 0.0, lambda outcome: starts.append(outcome.start_s))
    waits = [text for text in said if "nobody online" in text]
    assert waits and any(text.startswith("training ") for text in said)
    when = float(waits[0].split("someone is at ")[1].removesuffix(" s"))
    assert when % 60 == pytest.approx(0, abs=1e-6)  # a look on the 60 s grid from t = 0
    assert any(world.availability.online_until(c, when) > when for c in (0, 1))
    assert not any(
        world.availability.online_until(c, t) > t for c in (0, 1) for t in range(60, int(when), 60)
    )
