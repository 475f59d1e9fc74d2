"""FedBuff: versions, staleness, weights, availability and resume, step by step by hand.

Three Jetsons as in test_strategies.py: download 1 s, compute 2 s, upload 1 MB at 8, 2, 1 Mbps
(1, 4, 8 s), so client i runs a client-round in 4, 7, 11 s. With concurrency C = 3 = every
client, a client that ends is the only idle one and restarts at once, so who runs when is
fixed: c0 ends at 4, 8, 12, ...; c1 at 7, 14, 21; c2 at 11, 22. K = 2, max_staleness = 1:

 t   ends (trained on v)  staleness  buffer        server update
 4   c0 (v0)              0          [c0]
 7   c1 (v0)              0          [c0 c1]       v1 at 7
 8   c0 (v0)              1          [c0]
 11  c2 (v0)              1          [c0 c2]       v2 at 11
 12  c0 (v1)              1          [c0]
 14  c1 (v1)              1          [c0 c1]       v3 at 14
 16  c0 (v2)              1          [c0]
 20  c0 (v3)              0          [c0 c0]       v4 at 20
 21  c1 (v3)              1          [c1]
 22  c2 (v2)              2 > 1      stale, dropped
 24  c0 (v4)              0          [c1 c0]       v5 at 24 (last): c1 and c2 cancelled
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from conftest import (
    PROJECT_ROOT,
    hetero_dict,
    interrupt_at_append,
    per_client_links,
    scenario_dict,
)

from simulator.experiment import load_resumable, prepare_out, run_scenario
from simulator.rounds import ClientRound
from simulator.scenario import load_scenario
from simulator.server.strategies import FedBuff, staleness_weight
from simulator.training.base import LocalResult
from simulator.training.surrogate import SurrogateTrainer

TABLES = ("rounds.csv", "clients.csv", "evals.csv", "summary.json", "checkpoint.json")


def _rows(folder: Path, table: str) -> list[dict[str, str]]:
    with open(folder / f"{table}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _raw(tmp_path: Path, up: list[float], server: dict, **sections) -> dict:
    n = len(up)
    raw = scenario_dict(
        population={"clients": n, "per_round": n, "mix": {"jetson_orin_nano": 1.0}},
        network=per_client_links(tmp_path, up, [16.0] * n),
        server={"strategy": "fedbuff", **server},
    )
    raw.update(sections)
    return raw


def _run(write_scenario, raw: dict, out: Path) -> Path:
    path = write_scenario(raw)
    scenario = load_scenario(path)
    prepare_out(out, path, scenario)
    return run_scenario(scenario, out, progress=False)[0]


SERVER = {"rounds": 5, "concurrency": 3, "buffer_size": 2, "max_staleness": 1}


def test_versions_and_staleness_step_by_step(write_scenario, tmp_path):
    arm = _run(write_scenario, _raw(tmp_path, [8.0, 2.0, 1.0], SERVER), tmp_path / "run")
    rounds = _rows(arm, "rounds")
    assert [float(r["end_s"]) for r in rounds] == [7.0, 11.0, 14.0, 20.0, 24.0]
    assert [float(r["start_s"]) for r in rounds] == [0.0, 7.0, 11.0, 14.0, 20.0]
    assert [r["received"] for r in rounds] == ["2"] * 5
    # (round, client, download start, status, version trained on, staleness) in end order
    got = [
        (
            int(c["round"]),
            int(c["client"]),
            float(c["download_start_s"]),
            c["status"],
            c["version"],
            c["staleness"],
        )
        for c in _rows(arm, "clients")
    ]
    assert got == [
        (1, 0, 0.0, "ok", "0", "0"),
        (1, 1, 0.0, "ok", "0", "0"),
        (2, 0, 4.0, "ok", "0", "1"),
        (2, 2, 0.0, "ok", "0", "1"),
        (3, 0, 8.0, "ok", "1", "1"),
        (3, 1, 7.0, "ok", "1", "1"),
        (4, 0, 12.0, "ok", "2", "1"),
        (4, 0, 16.0, "ok", "3", "0"),
        (5, 1, 14.0, "ok", "3", "1"),
        (5, 2, 11.0, "stale", "2", "2"),
        (5, 0, 20.0, "ok", "4", "0"),
        (5, 1, 21.0, "cancelled", "4", ""),  # still in flight at 24 s, in start order
        (5, 2, 22.0, "cancelled", "4", ""),
    ]
    last = rounds[-1]
    assert (last["stale"], last["cancelled"], last["selected"]) == ("1", "2", "5")
    # the update that filled the buffer is the straggler: c0's 4 s, 2 of them computing
    assert [(r["slowest_client"], r["slowest_phase"]) for r in rounds] == [
        ("1", "upload"),
        ("2", "upload"),
        ("1", "upload"),
        ("0", "compute"),
        ("0", "compute"),
    ]


def test_cancelled_at_the_end_keep_partial_work(write_scenario, tmp_path):
    arm = _run(write_scenario, _raw(tmp_path, [8.0, 2.0, 1.0], SERVER), tmp_path / "run")
    cancelled = {int(c["client"]): c for c in _rows(arm, "clients") if c["status"] == "cancelled"}
    # c2 started at 22: downloaded 22-23, computing 23-25 when the run ends at 24
    assert (cancelled[2]["phase"], float(cancelled[2]["compute_end_s"])) == ("compute", 24.0)
    assert float(cancelled[2]["energy_j"]) == pytest.approx(1 * 1 + 4 * 1)
    # c1 started at 21: its upload was due to start at 24 when the run ended: 0 s, 0 bytes
    assert (cancelled[1]["phase"], cancelled[1]["uplink_bytes"]) == ("upload", "0")
    assert float(cancelled[1]["upload_end_s"]) == 24.0


def test_staleness_weights_drive_the_surrogate_quality(write_scenario, tmp_path):
    arm = _run(write_scenario, _raw(tmp_path, [8.0, 2.0, 1.0], SERVER), tmp_path / "run")
    w = staleness_weight
    # each update adds Σ w(s) · 100 samples / (per_round 3 · 100)
    steps = [
        w(0) + w(0),
        w(1) + w(1),
        w(1) + w(1),
        w(1) + w(0),
        w(1) + w(0),
    ]
    progress = [sum(steps[:i]) / 3 for i in range(6)]
    expected = [0.9 - 0.6 * math.exp(-p / 20.0) for p in progress]  # surrogate defaults
    got = [float(e["value"]) for e in _rows(arm, "evals")]
    assert got == pytest.approx(expected, rel=1e-12)


def test_weight_and_staleness_bound():
    fedbuff = FedBuff(concurrency=3, buffer_size=2, max_staleness=1)
    assert fedbuff.weight(0) == 1.0 and fedbuff.weight(1) == pytest.approx(1 / math.sqrt(2))
    assert fedbuff.weight(2) is None
    assert FedBuff(concurrency=3, buffer_size=2).weight(99) == pytest.approx(0.1)
    assert fedbuff.cohort(per_round=10) == 3


def test_surrogate_trainer_weights_updates_by_samples_and_factor(write_scenario):
    scenario = load_scenario(write_scenario(scenario_dict()))
    trainer = SurrogateTrainer(scenario, scenario.methods[0])
    received = [(0, LocalResult(10, 100)), (1, LocalResult(10, 100))]
    trainer.aggregate(1, received, [1.0, 0.5])
    assert trainer.progress == pytest.approx(1.5 * 100 / (4 * 100))  # per_round 4
    trainer.aggregate(2, received)
    assert trainer.progress == pytest.approx(3.5 / 4)


def test_offline_clients_are_skipped_and_rejoin(write_scenario, tmp_path):
    # c1 goes offline at 5.5 s (mid-upload) and is back at 30 s; c2 is offline until 900 s.
    # C = 2, K = 1: c0 alone updates every 4 s until the first wake-up after 30 s (c0 ending
    # at 32 s) starts c1 again, on version 8; it ends at 39 s, one version stale.
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("client,start_s,end_s\n0,0,1000\n1,0,5.5\n1,30,1000\n2,900,1000\n")
    server = {"rounds": 10, "concurrency": 2, "buffer_size": 1}
    avail = {"kind": "sessions", "file": str(sessions)}
    raw = _raw(tmp_path, [8.0, 2.0, 1.0], server, availability=avail)
    arm = _run(write_scenario, raw, tmp_path / "run")
    clients = _rows(arm, "clients")
    assert "2" not in {c["client"] for c in clients}
    one = [c for c in clients if c["client"] == "1"]
    first, back = one
    assert (first["round"], first["status"], first["phase"]) == ("2", "interrupted", "upload")
    assert int(first["uplink_bytes"]) == 625_000  # 2.5 s at 2 Mbps
    assert (float(back["download_start_s"]), back["version"], back["staleness"]) == (32.0, "8", "1")
    rounds = _rows(arm, "rounds")
    assert rounds[1]["interrupted"] == "1" and float(rounds[-1]["end_s"]) == 39.0
    assert rounds[-1]["slowest_client"] == "1"


def test_nobody_online_retries_on_the_grid(write_scenario, tmp_path):
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("client,start_s,end_s\n0,100,1000\n1,100,1000\n")
    server = {"rounds": 1, "concurrency": 1, "buffer_size": 1}
    avail = {"kind": "sessions", "file": str(sessions)}
    raw = _raw(tmp_path, [8.0, 8.0], server, availability=avail)
    arm = _run(write_scenario, raw, tmp_path / "run")
    (row,) = _rows(arm, "clients")
    assert float(row["download_start_s"]) == 120.0  # looked at 0, 60, then 120 s


def test_dropouts_are_replaced_at_once(write_scenario, tmp_path):
    server = {"rounds": 6, "concurrency": 4, "buffer_size": 2}
    raw = _raw(tmp_path, [8.0] * 8, server, availability={"kind": "bernoulli", "p_drop": 0.5})
    arm = _run(write_scenario, raw, tmp_path / "run")
    clients = _rows(arm, "clients")
    dropped = [c for c in clients if c["status"] == "dropped"]
    assert dropped and all(c["download_start_s"] == "" for c in dropped)
    # everyone who works takes 4 s, starting at 0, 4, 8, ...: every update lands on that grid
    assert {float(r["end_s"]) % 4.0 for r in _rows(arm, "rounds")} == {0.0}
    assert all(c["version"] != "" for c in clients)


def _hetero_fedbuff(write_scenario) -> Path:
    server = {"strategy": "fedbuff", "rounds": 12, "concurrency": 8, "buffer_size": 3}
    return write_scenario(hetero_dict(server={**server, "max_staleness": 3}))


def test_fedbuff_is_deterministic_and_resumes_exactly(write_scenario, tmp_path, monkeypatch):
    path = _hetero_fedbuff(write_scenario)
    scenario = load_scenario(path)
    reference = run_scenario(scenario, tmp_path / "ref", progress=False)
    again = run_scenario(scenario, tmp_path / "again", progress=False)
    for a, b in zip(reference, again, strict=True):
        for name in TABLES:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    statuses = {c["status"] for c in _rows(reference[0], "clients")}
    assert {"ok", "dropped"} <= statuses

    cut = tmp_path / "cut"
    prepare_out(cut, path, scenario)
    # arm 1 done (1 + 12 appends); arm 2 (1 + 4 appends) crashes in its fifth update
    interrupt_at_append(monkeypatch, 13 + 6, lambda: run_scenario(scenario, cut, progress=False))
    assert len((cut / "small" / "rounds.csv").read_text().splitlines()) == 1 + 4
    resumed = run_scenario(load_resumable(cut)[0], cut, resume=True, progress=False)
    for a, b in zip(reference, resumed, strict=True):
        for name in TABLES:
            assert (a / name).read_bytes() == (b / name).read_bytes(), (a.name, name)


def test_in_flight_state_round_trips():
    rec = ClientRound(7, 3, version=2)
    rec.times = [0.0, 1.0, 1.0, 3.0, 3.0, 4.5]
    rec.result = LocalResult(b"\x00\xffmessage", 12, work_flop=3e9)
    back = ClientRound.from_state(rec.state())
    assert back.result == rec.result and back.times == rec.times
    assert (back.key, back.client, back.version) == (7, 3, 2)
    sized = ClientRound(1, 0)
    sized.result = LocalResult(5_000, 10, compute_s=2.0)
    assert ClientRound.from_state(sized.state()).result == sized.result


def test_wake_ups_follow_planned_ends_despite_float_rounding(tmp_path):
    # On these links a SimPy timeout of (end - now) can land one ulp before `end`; a server
    # that compared with SimPy's clock stalled here. It must finish all its updates.
    overrides = ["strategy=fedbuff", "concurrency=20", "buffer_size=10", "rounds=8"]
    path = PROJECT_ROOT / "scenarios" / "hetero-lte.toml"
    scenario = load_scenario(path, [f"server.{o}" for o in overrides])
    (arm,) = run_scenario(scenario, tmp_path / "run", arms=["fed-fstq"], progress=False)
    assert [int(r["round"]) for r in _rows(arm, "rounds")] == list(range(1, 9))
