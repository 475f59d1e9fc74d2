"""The surrogate trainer alone: payload and downlink sizes per method, the fixed compute cost,
progress from the (weighted) received samples, the quality curve and its seeded noise, and
state/restore for resume."""

from __future__ import annotations

import math

import pytest
from conftest import scenario_dict

from simulator.scenario import Scenario
from simulator.training.base import LocalResult
from simulator.training.surrogate import MB, SurrogateTrainer

TRAINING = {"mode": "surrogate", "downlink_mb": 2.0, "initial": 0.3, "ceiling": 0.9}


def _trainer(method: dict | None = None, **training) -> SurrogateTrainer:
    raw = scenario_dict(
        training=TRAINING | training,
        methods=[method or {"name": "dense", "payload_mb": 1.0, "compute_s": 2.0}],
    )
    scenario = Scenario.model_validate(raw)
    return SurrogateTrainer(scenario, scenario.methods[0])


def _full_round(trainer: SurrogateTrainer, round_index: int = 1) -> list[tuple[int, LocalResult]]:
    """Every one of the per_round (4) selected clients' results."""
    return [(c, trainer.train(c, round_index)) for c in range(4)]


def test_payload_and_downlink_from_megabytes():
    trainer = _trainer({"name": "small", "payload_mb": 0.25, "compute_s": 1.0})
    assert trainer.mode == trainer.source == "surrogate"
    assert trainer.payload == 250_000
    assert trainer.downlink_bytes(0) == trainer.downlink_bytes(3) == 2 * MB


def test_payload_from_bits_per_param_is_rounded_up_to_whole_bytes():
    method = {"name": "q3", "bits_per_param": 3.0, "compute_s": 1.0}
    trainer = _trainer(method, adapter_params=1001)
    assert trainer.payload == math.ceil(3003 / 8) == 376
    assert trainer.train(0, 1).uplink_bytes == 376


def test_a_method_downlink_replaces_the_training_default():
    trainer = _trainer({"name": "d", "payload_mb": 1.0, "compute_s": 1.0, "downlink_mb": 0.5})
    assert trainer.downlink_bytes(1) == 500_000
    zero = _trainer({"name": "d", "payload_mb": 1.0, "compute_s": 1.0, "downlink_mb": 0.0})
    assert zero.downlink_bytes(1) == 0  # an explicit 0 is not the default


def test_train_returns_the_fixed_size_samples_and_compute_seconds():
    trainer = _trainer(samples_per_client=37)
    result = trainer.train(2, 5)
    assert result.message == 1 * MB and isinstance(result.message, int)
    assert result.num_samples == 37
    assert result.compute_seconds(1e12) == 2.0 and result.work_flop is None
    assert trainer.train(3, 9) == result  # the same for every client and round


def test_compute_tflop_becomes_counted_work():
    trainer = _trainer({"name": "t", "payload_mb": 1.0, "compute_tflop": 3.0})
    result = trainer.train(0, 1)
    assert result.compute_s is None and result.work_flop == pytest.approx(3e12)
    assert result.compute_seconds(1.5e12) == pytest.approx(2.0)


def test_evaluate_starts_at_initial_and_a_full_round_is_one_round_of_progress():
    trainer = _trainer(tau_rounds=10.0)
    assert trainer.evaluate(0) == {"accuracy": pytest.approx(0.3)}
    assert trainer.aggregate(1, _full_round(trainer)) == set()  # nothing is ever rejected
    assert trainer.progress == pytest.approx(1.0)
    expected = 0.9 - 0.6 * math.exp(-1 / 10)
    assert trainer.evaluate(1) == {"accuracy": pytest.approx(expected)}
    for r in range(2, 200):
        trainer.aggregate(r, _full_round(trainer, r))
    assert trainer.evaluate(199)["accuracy"] == pytest.approx(0.9, abs=1e-6)  # the ceiling


def test_fewer_received_clients_give_proportionally_less_progress():
    trainer = _trainer()
    trainer.aggregate(1, _full_round(trainer)[:3])
    assert trainer.progress == pytest.approx(0.75)
    trainer.aggregate(2, [])
    assert trainer.progress == pytest.approx(0.75)


def test_staleness_weights_scale_each_update():
    trainer = _trainer()
    received = _full_round(trainer)[:2]
    trainer.aggregate(1, received, weights=[1.0, 1 / math.sqrt(1 + 3)])
    assert trainer.progress == pytest.approx((1 + 0.5) * 100 / (4 * 100))


def test_weights_must_match_the_received_updates():
    trainer = _trainer()
    with pytest.raises(ValueError):
        trainer.aggregate(1, _full_round(trainer), weights=[1.0, 1.0])


def test_efficiency_scales_progress_and_slows_convergence():
    half = _trainer({"name": "lossy", "payload_mb": 0.1, "compute_s": 1.0, "efficiency": 0.5})
    full = _trainer()
    for r in (1, 2):
        half.aggregate(r, _full_round(half, r))
    full.aggregate(1, _full_round(full))
    assert half.progress == pytest.approx(full.progress) == pytest.approx(1.0)
    assert half.evaluate(2) == pytest.approx(full.evaluate(1))


def test_the_metric_name_comes_from_the_scenario():
    trainer = _trainer(metric="f1")
    assert set(trainer.evaluate(0)) == {"f1"}


def test_noise_is_seeded_by_round_and_does_not_accumulate():
    noisy = _trainer(noise_sd=0.05)
    clean = _trainer()
    first = noisy.evaluate(3)["accuracy"]
    assert first == noisy.evaluate(3)["accuracy"]  # same round, same draw
    assert first != pytest.approx(clean.evaluate(3)["accuracy"])
    draws = [noisy.evaluate(r)["accuracy"] - clean.evaluate(r)["accuracy"] for r in range(200)]
    assert len(set(draws)) == 200
    assert abs(sum(draws) / 200) < 0.05 * 4 / math.sqrt(200)  # zero-mean
    other_seed = Scenario.model_validate(
        scenario_dict(seed=8, training=TRAINING | {"noise_sd": 0.05})
    )
    shifted = SurrogateTrainer(other_seed, other_seed.methods[0])
    assert shifted.evaluate(3)["accuracy"] != first


def test_noise_is_clipped_to_the_unit_interval():
    trainer = _trainer(noise_sd=5.0, initial=0.0, ceiling=1.0)
    values = {trainer.evaluate(r)["accuracy"] for r in range(100)}
    assert min(values) == 0.0 and max(values) == 1.0
    assert all(0.0 <= v <= 1.0 for v in values)


def test_state_and_restore_resume_the_curve_exactly():
    trainer = _trainer(noise_sd=0.01)
    for r in (1, 2, 3):
        trainer.aggregate(r, _full_round(trainer, r)[: r + 1])
    state = trainer.state()
    assert state == {"progress": pytest.approx(0.5 + 0.75 + 1.0)}
    resumed = _trainer(noise_sd=0.01)
    resumed.restore(state)
    assert resumed.evaluate(3) == trainer.evaluate(3)
    resumed.aggregate(4, _full_round(resumed, 4))
    trainer.aggregate(4, _full_round(trainer, 4))
    assert resumed.evaluate(4) == trainer.evaluate(4)


def test_it_has_nothing_to_prepare_finish_or_time(tmp_path):
    trainer = _trainer()
    assert trainer.begin_round([(0, 1)], lambda client, seconds: 0) is None
    trainer.finish()
    assert list(tmp_path.iterdir()) == []
    assert trainer.host_seconds() == {}
