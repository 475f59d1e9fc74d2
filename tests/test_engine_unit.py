"""The engine alone, driven with a fake trainer: what it asks the trainer, when, and what it
reports (no TOML run, no recorder)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import scenario_dict

from simulator.engine import Engine
from simulator.recorder import ROUND_COLUMNS
from simulator.rounds import ClientRound, RoundOutcome
from simulator.scenario import Scenario
from simulator.training.base import LocalResult
from simulator.world import build_world

MB = 1_000_000


class FakeTrainer:
    """Fixed sizes and costs; records every call; rejects the clients listed in `reject`."""

    mode, source = "fake", "fake"

    def __init__(self, reject: frozenset[int] = frozenset()) -> None:
        self.reject = reject
        self.calls: list[tuple] = []

    def downlink_bytes(self, client: int) -> int:
        return 2 * MB

    def begin_round(self, starts: list[tuple[int, int]], uplink: Callable) -> None:
        self.calls.append(("begin", sorted(starts), uplink(starts[0][0], 1.0)))

    def train(self, client: int, round_index: int) -> LocalResult:
        return LocalResult(1 * MB, 10 + client, compute_s=2.0)

    def aggregate(self, round_index, received, weights=None) -> set[int]:
        clients = [client for client, _ in received]
        self.calls.append(("aggregate", round_index, clients, weights))
        return {i for i, client in enumerate(clients) if client in self.reject}


def _run(trainer: FakeTrainer, **sections) -> list[RoundOutcome]:
    scenario = Scenario.model_validate(scenario_dict(**sections))
    engine = Engine(build_world(scenario), scenario.methods[0], trainer)
    outcomes: list[RoundOutcome] = []
    engine.run(1, 0.0, outcomes.append)
    return outcomes


def test_sync_rounds_ask_the_trainer_in_order_and_last_download_plus_compute_plus_upload():
    trainer = FakeTrainer()
    outcomes = _run(trainer)
    # 2 MB at 16 Mbps = 1 s, compute 2 s, 1 MB at 8 Mbps = 1 s: every round lasts 4 s
    assert [(o.round, o.start_s, o.end_s) for o in outcomes] == [(1, 0, 4), (2, 4, 8), (3, 8, 12)]
    kinds = [call[0] for call in trainer.calls]
    assert kinds == ["begin", "aggregate"] * 3
    begin, aggregate = trainer.calls[:2]
    assert begin[1] == [(c, 1) for c in range(4)]  # everyone, keyed by the round
    assert begin[2] == 1 * MB  # what the uplink delivers in 1 s from receiving the state
    assert aggregate[1] == 1 and sorted(aggregate[2]) == [0, 1, 2, 3] and aggregate[3] is None
    assert all(o.received == 4 for o in outcomes)


def test_a_rejected_message_becomes_corrupt_and_is_not_counted_received():
    outcomes = _run(FakeTrainer(reject=frozenset({2})))
    first = outcomes[0]
    assert first.received == 3
    assert {c.client: c.status for c in first.clients}[2] == "corrupt"
    assert first.row()[ROUND_COLUMNS.index("corrupt")] == 1


@pytest.mark.parametrize("deadline", [3.5, 100.0])
def test_a_deadline_cuts_the_uploads_still_running(deadline):
    trainer = FakeTrainer()
    outcomes = _run(trainer, server={"rounds": 1, "strategy": "deadline", "deadline_s": deadline})
    (outcome,) = outcomes
    statuses = {c.status for c in outcome.clients}
    if deadline < 4:
        assert outcome.end_s == deadline and statuses == {"late"} and outcome.received == 0
        assert all(c.up_bytes == MB // 2 for c in outcome.clients)  # half the upload by then
        assert trainer.calls[-1] == ("aggregate", 1, [], None)
    else:
        assert outcome.end_s == 4 and statuses == {"ok"} and outcome.received == 4


def test_fedbuff_hands_staleness_weights_to_the_trainer():
    trainer = FakeTrainer()
    server = {"rounds": 2, "strategy": "fedbuff", "concurrency": 4, "buffer_size": 2}
    outcomes = _run(trainer, server=server)
    assert [o.round for o in outcomes] == [1, 2]
    aggregates = [call for call in trainer.calls if call[0] == "aggregate"]
    assert [len(call[2]) for call in aggregates] == [2, 2]
    assert aggregates[0][3] == [1.0, 1.0]  # fresh updates: w(0) = 1


def test_a_client_round_row_names_each_attribute():
    rec = ClientRound(key=7, client=3, version=5)
    rec.status, rec.phase, rec.staleness = "late", "upload", 2
    rec.times = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    rec.down_bytes, rec.up_bytes, rec.energy = 11, 22, 33.0
    rec.loss_first, rec.loss_last, rec.tokens, rec.flop = 2.5, 1.5, 640, 9e9
    row = rec.row("laptop")
    assert row._asdict() == {
        "round": 7,
        "client": 3,
        "device": "laptop",
        "status": "late",
        "phase": "upload",
        "download_start_s": 0.5,
        "download_end_s": 1.5,
        "compute_start_s": 2.5,
        "compute_end_s": 3.5,
        "upload_start_s": 4.5,
        "upload_end_s": 5.5,
        "downlink_bytes": 11,
        "uplink_bytes": 22,
        "energy_j": 33.0,
        "version": 5,
        "staleness": 2,
        "train_loss_first": 2.5,
        "train_loss_last": 1.5,
        "tokens_trained": 640,
        "flop": 9e9,
    }
