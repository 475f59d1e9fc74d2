"""Transit faults: which uploads are lost, corrupted or truncated (rates, seeded per round and
client, the same for every arm), what a damaged message looks like, and size-only messages."""

from __future__ import annotations

import pytest

from simulator.network.faults import LOST, FaultModel
from simulator.scenario import Faults

MESSAGE = bytes(range(256)) * 4  # 1 KiB, every byte value
N = 4000  # (round, client) pairs for the rate tests


def _model(seed: int = 7, **rates: float) -> FaultModel:
    return FaultModel(Faults(**rates), seed)


def _outcome(received: bytes | int | None, sent: bytes | int) -> str:
    if received is None:
        return "drop"
    if received == sent:
        return "ok"
    if len(received) == len(sent):
        return "corrupt"
    return "truncate"


def _counts(model: FaultModel, message: bytes | int = MESSAGE) -> dict[str, int]:
    counts = {"ok": 0, "drop": 0, "corrupt": 0, "truncate": 0}
    for i in range(N):
        counts[_outcome(model.apply(i // 40, i % 40, message), message)] += 1
    return counts


def test_lost_is_the_status_the_engine_records():
    assert LOST == "lost"


def test_no_faults_is_inactive_and_returns_the_very_same_message():
    model = _model()
    assert not model.active
    for message in (MESSAGE, 12345, b""):
        assert model.apply(1, 2, message) is message


@pytest.mark.parametrize(
    "rates",
    [
        {"drop": 0.2},
        {"corrupt": 0.3},
        {"truncate": 0.25},
        {"drop": 0.1, "corrupt": 0.2, "truncate": 0.3},
    ],
)
def test_each_fault_hits_its_share_of_the_uploads(rates):
    counts = _counts(_model(**rates))
    for kind in ("drop", "corrupt", "truncate"):
        p = rates.get(kind, 0.0)
        sd = (p * (1 - p) / N) ** 0.5
        assert abs(counts[kind] / N - p) < 4 * sd + 1e-12, (kind, counts)
    assert counts["ok"] == N - counts["drop"] - counts["corrupt"] - counts["truncate"]


@pytest.mark.parametrize("kind", ["drop", "corrupt", "truncate"])
def test_a_rate_of_one_hits_every_upload(kind):
    model = _model(**{kind: 1.0})
    assert _counts(model)[kind] == N


def test_a_corrupt_message_has_exactly_one_byte_changed():
    model = _model(corrupt=1.0)
    positions = set()
    for client in range(200):
        received = model.apply(3, client, MESSAGE)
        assert isinstance(received, bytes) and len(received) == len(MESSAGE)
        diff = [i for i, (a, b) in enumerate(zip(received, MESSAGE, strict=True)) if a != b]
        assert len(diff) == 1
        positions.add(diff[0])
    assert len(positions) > 100  # the flipped byte is spread over the message


def test_a_truncated_message_is_a_strict_prefix():
    model = _model(truncate=1.0)
    lengths = set()
    for client in range(200):
        received = model.apply(3, client, MESSAGE)
        assert isinstance(received, bytes) and len(received) < len(MESSAGE)
        assert MESSAGE.startswith(received)
        lengths.add(len(received))
    assert len(lengths) > 100 and min(lengths) < 100 and max(lengths) > 900


def test_faults_are_drawn_per_round_and_client_and_do_not_depend_on_call_order():
    rates = {"drop": 0.2, "corrupt": 0.2, "truncate": 0.2}
    pairs = [(r, c) for r in range(10) for c in range(20)]
    forward = {p: _model(**rates).apply(*p, MESSAGE) for p in pairs}
    model = _model(**rates)  # one model, asked in reverse order and twice
    backward = {p: model.apply(*p, MESSAGE) for p in reversed(pairs)}
    again = {p: model.apply(*p, MESSAGE) for p in pairs}
    assert forward == backward == again
    assert len({_outcome(v, MESSAGE) for v in forward.values()}) == 4  # all four outcomes occur


def test_every_arm_sees_the_same_drops_whatever_its_message():
    # common random numbers: which uploads are lost depends on (seed, round, client) only
    model = _model(drop=0.3)
    small, large = b"x" * 10, MESSAGE

    def lost(message: bytes | int) -> list[bool]:
        return [model.apply(r, c, message) is None for r in range(5) for c in range(30)]

    assert lost(small) == lost(large) == lost(10**6)
    assert any(lost(small)) and not all(lost(small))


def test_the_seed_round_and_client_each_change_the_draws():
    rates = {"drop": 0.5}
    base = [_model(7, **rates).apply(r, c, 1) for r in range(4) for c in range(25)]
    other_seed = [_model(8, **rates).apply(r, c, 1) for r in range(4) for c in range(25)]
    swapped = [_model(7, **rates).apply(c, r, 1) for r in range(4) for c in range(25)]
    assert base != other_seed and base != swapped


def test_a_size_only_message_is_dropped_or_passed_through_unchanged():
    model = _model(drop=0.4)
    seen = set()
    for client in range(100):
        received = model.apply(1, client, 5_000_000)
        assert received is None or received == 5_000_000
        seen.add(received)
    assert seen == {None, 5_000_000}


@pytest.mark.parametrize(
    "rates",
    [{"drop": -0.1}, {"corrupt": 1.5}, {"drop": 0.5, "corrupt": 0.3, "truncate": 0.3}],
)
def test_faults_spec_refuses_impossible_rates(rates):
    with pytest.raises(ValueError):
        Faults(**rates)
