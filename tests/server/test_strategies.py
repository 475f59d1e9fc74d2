"""Synchronous strategies: their decisions by hand, then whole rounds timed by hand.

Timing scenario unless a test says otherwise: clients are Jetsons (4 W compute, 2 W transmit,
1 W receive), each downloads 2 MB at 16 Mbps (1 s), computes 2 s, then uploads 1 MB over its
own constant uplink: 8, 2, 1, 0.5 Mbps = 1, 4, 8, 16 s. So client i finishes at
1 + 2 + upload_i = 4, 7, 11, 19 s, and a full round costs it 1·1 + 4·2 + 2·upload_i joules:
11, 17, 25, 41 J.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import per_client_links, scenario_dict

from simulator.engine import Engine
from simulator.errors import ScenarioError
from simulator.experiment import run_scenario
from simulator.rounds import ClientRound
from simulator.scenario import load_scenario
from simulator.server.strategies import Deadline, OverSelect, Plan, Sync, overselect_count
from simulator.training.surrogate import SurrogateTrainer
from simulator.world import build_world

UPLINKS = [8.0, 2.0, 1.0, 0.5]


def _rows(folder: Path, table: str) -> list[dict[str, str]]:
    with open(folder / f"{table}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _run(
    write_scenario, tmp_path, server: dict, up=UPLINKS, down=None, per_round=None, **sections
) -> Path:
    n = len(up)
    raw = scenario_dict(
        population={"clients": n, "per_round": per_round or n, "mix": {"jetson_orin_nano": 1.0}},
        network=per_client_links(tmp_path, up, down or [16.0] * n),
        server=server,
    )
    raw.update(sections)
    scenario = load_scenario(write_scenario(raw))
    return run_scenario(scenario, tmp_path / "out", progress=False)[0]


def _first_round(arm: Path) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    clients = {int(c["client"]): c for c in _rows(arm, "clients") if c["round"] == "1"}
    return _rows(arm, "rounds")[0], clients


# --- decisions ----------------------------------------------------------------------------

PLANS = [Plan(4.0, True), Plan(19.0, True), Plan(2.5, False), Plan(7.0, True), Plan(11.0, True)]


def test_sync_waits_for_the_last_finish_or_failure():
    closing = Sync().close(0.0, PLANS)
    assert (closing.time, closing.stopped, closing.straggler) == (19.0, (), 1)
    assert Sync().close(3.0, []).time == 3.0  # everyone dropped out: the round is empty


def test_deadline_by_seconds_stops_who_is_still_working():
    closing = Deadline(deadline_s=6.0).close(1.0, PLANS)  # cut-off 1 + 6 = 7
    # 7.0 arrives exactly at the cut-off and counts; 19 and 11 are late, 19 the farthest
    assert (closing.time, closing.stopped, closing.straggler) == (7.0, (1, 4), 1)
    early = Deadline(deadline_s=30.0).close(0.0, PLANS)
    assert (early.time, early.stopped) == (19.0, ())  # everyone done before the deadline


def test_deadline_percentile_is_the_nearest_rank_of_arrivals():
    # arrivals 4, 7, 11, 19 (the failure at 2.5 is no arrival); 50% -> rank 2 -> 7
    assert Deadline(percentile=50).close(0.0, PLANS).time == 7.0
    assert Deadline(percentile=60).close(0.0, PLANS).time == 11.0  # rank ceil(2.4) = 3
    assert Deadline(percentile=100).close(0.0, PLANS).stopped == ()
    nobody = Deadline(percentile=50).close(0.0, [Plan(2.0, False), Plan(5.0, False)])
    assert (nobody.time, nobody.stopped) == (5.0, ())


def test_overselect_closes_at_the_nth_arrival_and_cancels_ties_after_it():
    closing = OverSelect(epsilon=0.5, per_round=2).close(0.0, PLANS)
    assert (closing.time, closing.stopped, closing.straggler) == (7.0, (1, 4), 3)
    tie = [Plan(5.0, True), Plan(3.0, True), Plan(5.0, True), Plan(9.0, False)]
    closing = OverSelect(epsilon=0.5, per_round=2).close(0.0, tie)
    # arrivals by (time, selection order): 1@3, 0@5, then 2@5 is over quota and cancelled
    assert (closing.time, closing.stopped, closing.straggler) == (5.0, (2, 3), 0)
    short = OverSelect(epsilon=0.5, per_round=3).close(0.0, PLANS[2:])  # 2 arrivals < 3
    assert (short.time, short.stopped, short.straggler) == (11.0, (), 2)


def test_overselect_count_is_free_of_float_noise():
    assert overselect_count(10, 0.3) == 13  # 10·1.3 = 13.000000000000002 in floats
    assert overselect_count(10, 0.25) == 13 and overselect_count(4, 0.0) == 4


# --- whole rounds -------------------------------------------------------------------------


def test_sync_round_ends_at_the_last_upload_and_names_it(write_scenario, tmp_path):
    arm = _run(write_scenario, tmp_path, {"rounds": 2})
    first, clients = _first_round(arm)
    assert [float(r["end_s"]) for r in _rows(arm, "rounds")] == [19.0, 38.0]
    assert {c: float(r["upload_end_s"]) for c, r in clients.items()} == pytest.approx(
        {0: 4.0, 1: 7.0, 2: 11.0, 3: 19.0}
    )
    assert {r["status"] for r in clients.values()} == {"ok"} and first["received"] == "4"
    assert (first["slowest_client"], first["slowest_phase"]) == ("3", "upload")
    assert float(first["energy_j_max"]) == pytest.approx(41.0)


def test_sync_straggler_phase_can_be_the_download(write_scenario, tmp_path):
    # client 3 downloads 2 MB at 0.25 Mbps (64 s), then 2 s compute and a 1 s upload at 8 Mbps
    arm = _run(write_scenario, tmp_path, {"rounds": 1}, up=[8.0] * 4, down=[16.0] * 3 + [0.25])
    first, _ = _first_round(arm)
    assert float(first["end_s"]) == pytest.approx(67.0)
    assert (first["slowest_client"], first["slowest_phase"]) == ("3", "download")


def test_deadline_in_seconds_discards_late_uploads_and_counts_their_bytes(write_scenario, tmp_path):
    arm = _run(write_scenario, tmp_path, {"rounds": 2, "strategy": "deadline", "deadline_s": 6.0})
    first, clients = _first_round(arm)
    assert [float(r["end_s"]) for r in _rows(arm, "rounds")] == [6.0, 12.0]
    assert (first["received"], first["late"]) == ("1", "3")
    assert clients[0]["status"] == "ok"
    for c, sent in ((1, 750_000), (2, 375_000), (3, 187_500)):  # 3 s of upload at 2, 1, 0.5 Mbps
        late = clients[c]
        assert (late["status"], late["phase"]) == ("late", "upload")
        assert int(late["uplink_bytes"]) == sent
        assert float(late["upload_end_s"]) == 6.0
        assert float(late["energy_j"]) == pytest.approx(1 + 8 + 2 * 3)  # worked until 6 s only
    assert int(first["uplink_bytes"]) == 1_000_000 + 750_000 + 375_000 + 187_500
    # the straggler is the stopped client planned to finish last: 3 (due at 19 s), uploading
    assert (first["slowest_client"], first["slowest_phase"]) == ("3", "upload")


def test_deadline_during_compute_sends_nothing(write_scenario, tmp_path):
    arm = _run(write_scenario, tmp_path, {"rounds": 1, "strategy": "deadline", "deadline_s": 2.5})
    first, clients = _first_round(arm)
    assert {(r["status"], r["phase"], r["uplink_bytes"]) for r in clients.values()} == {
        ("late", "compute", "0")
    }
    assert all(r["upload_start_s"] == "" for r in clients.values())
    assert float(clients[0]["energy_j"]) == pytest.approx(1 * 1 + 4 * 1.5)
    assert (first["received"], first["slowest_client"], first["slowest_phase"]) == (
        "0",
        "3",
        "compute",
    )


def test_deadline_closes_early_when_everyone_is_done(write_scenario, tmp_path):
    arm = _run(write_scenario, tmp_path, {"rounds": 1, "strategy": "deadline", "deadline_s": 30})
    first, _ = _first_round(arm)
    assert (float(first["end_s"]), first["late"], first["slowest_client"]) == (19.0, "0", "3")


def test_deadline_at_a_percentile_of_planned_finishes(write_scenario, tmp_path):
    # finishes 4, 7, 11, 19: the 50th percentile (rank 2 of 4) closes the round at 7 s
    arm = _run(write_scenario, tmp_path, {"rounds": 1, "strategy": "deadline", "percentile": 50})
    first, clients = _first_round(arm)
    assert float(first["end_s"]) == 7.0 and first["received"] == "2"
    assert [clients[c]["status"] for c in range(4)] == ["ok", "ok", "late", "late"]
    # 4 s of upload at 1 and 0.5 Mbps
    assert [int(clients[c]["uplink_bytes"]) for c in (2, 3)] == [500_000, 250_000]


def test_overselect_aggregates_the_first_n_and_cancels_the_rest(write_scenario, tmp_path):
    # 3 clients (8, 2, 1 Mbps: done at 4, 7, 11 s); n = 2 and ε = 0.5 select ⌈3⌉ = all three
    server = {"rounds": 1, "strategy": "overselect", "epsilon": 0.5}
    arm = _run(write_scenario, tmp_path, server, up=UPLINKS[:3], per_round=2)
    first, clients = _first_round(arm)
    assert (first["selected"], first["received"], float(first["end_s"])) == ("3", "2", 7.0)
    cancelled = clients[2]
    assert (cancelled["status"], cancelled["phase"]) == ("cancelled", "upload")
    assert int(cancelled["uplink_bytes"]) == 500_000  # 4 s at 1 Mbps, cut at 7 s
    assert float(cancelled["energy_j"]) == pytest.approx(1 + 8 + 2 * 4)
    assert (first["cancelled"], first["slowest_client"], first["slowest_phase"]) == (
        "1",
        "1",
        "upload",
    )


# --- availability under every synchronous strategy ----------------------------------------


def _sessions(tmp_path: Path, ends: list[float]) -> dict:
    path = tmp_path / "sessions.csv"
    rows = "".join(f"{c},0,{end}\n" for c, end in enumerate(ends))
    path.write_text("client,start_s,end_s\n" + rows)
    return {"kind": "sessions", "file": str(path)}


@pytest.mark.parametrize(
    ("server", "end_s"),
    [
        ({"rounds": 1}, 19.0),
        ({"rounds": 1, "strategy": "deadline", "deadline_s": 15.0}, 15.0),
        ({"rounds": 1, "strategy": "overselect", "epsilon": 0.0}, 19.0),
    ],
)
def test_sessions_interrupt_mid_phase_under_every_strategy(write_scenario, tmp_path, server, end_s):
    # client 0 goes offline 1.5 s into compute, client 1 3 s into its upload (at 2 Mbps)
    avail = _sessions(tmp_path, [2.5, 6.0, 1000.0, 1000.0])
    arm = _run(write_scenario, tmp_path, server, availability=avail)
    first, clients = _first_round(arm)
    assert (clients[0]["status"], clients[0]["phase"]) == ("interrupted", "compute")
    assert float(clients[0]["energy_j"]) == pytest.approx(1 + 4 * 1.5)
    assert (clients[1]["status"], clients[1]["phase"]) == ("interrupted", "upload")
    assert int(clients[1]["uplink_bytes"]) == 750_000
    assert first["interrupted"] == "2" and float(first["end_s"]) == end_s
    assert first["received"] == ("1" if end_s == 15.0 else "2")


def test_overselect_with_too_few_arrivals_waits_like_sync(write_scenario, tmp_path):
    # n = 3 of 4 (ε = 0): clients 0 and 1 go offline, so only 2 and 3 arrive (11 s, 19 s)
    avail = _sessions(tmp_path, [2.5, 6.0, 1000.0, 1000.0])
    server = {"rounds": 1, "strategy": "overselect", "epsilon": 0.0}
    arm = _run(write_scenario, tmp_path, server, availability=avail)
    first, _ = _first_round(arm)
    assert (float(first["end_s"]), first["cancelled"], first["slowest_client"]) == (19.0, "0", "3")


@pytest.mark.parametrize(
    "server",
    [
        {"rounds": 6, "strategy": "deadline", "deadline_s": 8.0},
        {"rounds": 6, "strategy": "overselect", "epsilon": 0.5},
    ],
)
def test_dropped_clients_do_not_hold_rounds_under_cutting_strategies(
    write_scenario, tmp_path, server
):
    avail = {"kind": "bernoulli", "p_drop": 0.5}
    arm = _run(write_scenario, tmp_path, server, up=[8.0] * 8, per_round=4, availability=avail)
    clients = _rows(arm, "clients")
    dropped = [c for c in clients if c["status"] == "dropped"]
    assert dropped
    assert all(c["download_start_s"] == "" and c["uplink_bytes"] == "0" for c in dropped)
    for r in _rows(arm, "rounds"):
        mine = [c for c in clients if c["round"] == r["round"]]
        worked = [c for c in mine if c["status"] != "dropped"]
        assert int(r["dropped"]) == len(mine) - len(worked)
        # everyone who works is done at 4 s: a dropout never holds the round
        assert float(r["duration_s"]) == (4.0 if worked else 0.0)
        assert int(r["received"]) == min(len(worked), 4)


def test_stopping_cuts_work_discards_arrivals_and_keeps_failures(write_scenario, tmp_path):
    raw = scenario_dict(network=per_client_links(tmp_path, UPLINKS, [16.0] * 4))
    scenario = load_scenario(write_scenario(raw))
    method = scenario.methods[0]
    engine = Engine(build_world(scenario), method, SurrogateTrainer(scenario, method))
    working, arrived, dropped = (ClientRound(1, c) for c in (3, 0, 1))
    engine._start([working, arrived, dropped], [False, False, True], 0.0)
    engine._stop(working, 5.0, "late")  # client 3: 2 s into its 0.5 Mbps upload
    assert (working.status, working.phase, working.up_bytes) == ("late", "upload", 125_000)
    assert working.times[5] == working.end == 5.0 and working.result is None
    assert working.energy == pytest.approx(1 + 8 + 2 * 2)
    engine._stop(arrived, 5.0, "cancelled")  # arrived at 4 s: discarded, its work stands
    assert (arrived.status, arrived.end, arrived.up_bytes) == ("cancelled", 4.0, 1_000_000)
    assert arrived.result is None
    engine._stop(dropped, 5.0, "cancelled")
    assert dropped.status == "dropped"


# --- a strategy written outside the package -------------------------------------------------

FASTEST = '''
from pydantic import BaseModel, ConfigDict, Field

from simulator.server.strategies import Closing, RoundStrategy


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    keep: int = Field(gt=0)


class Fastest(RoundStrategy):
    """Aggregate the `keep` earliest arrivals; cancel everyone still working then."""

    name = "fastest"
    cut_status = "cancelled"
    Options = Options

    def close(self, start, plans):
        arrivals = sorted((p.end, i) for i, p in enumerate(plans) if p.arrives)
        time, last = arrivals[self.options.keep - 1]
        stopped = tuple(i for i, p in enumerate(plans) if p.end > time)
        return Closing(time, stopped, last)
'''


def test_a_user_strategy_runs_from_a_scenario_file_with_its_options(
    write_scenario, tmp_path, monkeypatch
):
    (tmp_path / "mypkg_strategy.py").write_text(FASTEST, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    server = {"rounds": 2, "strategy": "mypkg_strategy:Fastest", "keep": 2}
    arm = _run(write_scenario, tmp_path, server)
    first, clients = _first_round(arm)
    assert [float(r["end_s"]) for r in _rows(arm, "rounds")] == [7.0, 14.0]  # 2nd arrival
    assert {c: r["status"] for c, r in clients.items()} == {
        0: "ok",
        1: "ok",
        2: "cancelled",
        3: "cancelled",
    }
    assert (first["received"], first["slowest_client"]) == ("2", "1")
    bad = scenario_dict(server={**server, "keep": 0})
    with pytest.raises(ScenarioError, match=r"server\.keep: Input should be greater than 0"):
        load_scenario(write_scenario(bad))
    with pytest.raises(ScenarioError, match=r"server\.strategy: cannot import strategy"):
        load_scenario(write_scenario(scenario_dict(server={"rounds": 1, "strategy": "no.pkg:X"})))


@pytest.mark.parametrize(
    "server",
    [
        {"strategy": "deadline", "deadline_s": True},  # was a 1 s deadline
        {"strategy": "overselect", "epsilon": True},  # was 100 % over-selection
        {"strategy": "fedbuff", "concurrency": 4, "buffer_size": 2, "max_staleness": True},
    ],
)
def test_a_boolean_strategy_option_is_an_error_not_one(write_scenario, server):
    raw = scenario_dict(server={"rounds": 3, **server})
    with pytest.raises(ScenarioError, match="true where a number belongs. Fix: give a number"):
        load_scenario(write_scenario(raw))
