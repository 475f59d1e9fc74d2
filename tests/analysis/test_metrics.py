"""Metrics against values worked out by hand from the hand-made run directories."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from rundirs import hand_run, hand_sweep

from analysis import metrics
from analysis.runs import find_arms, load_table
from simulator.errors import SimulatorError


def test_time_and_bytes_to_target_and_not_reached(tmp_path):
    run = hand_run(tmp_path)
    evals = load_table(run, "evals")
    hit = metrics.to_target(evals, 0.6).set_index("arm")
    assert hit.loc["dense", ["round", "time_s", "uplink_bytes"]].tolist() == [2, 20.0, 8000]
    assert hit.loc["small", ["round", "time_s", "uplink_bytes"]].tolist() == [2, 10.0, 1000]
    missed = metrics.to_target(evals, 0.8)
    assert not missed["reached"].any() and missed["time_s"].isna().all()
    ratios = metrics.against_baseline(missed, "dense")
    assert ratios["bytes_ratio"].isna().all() and ratios["time_reduction_pct"].isna().all()


def test_unknown_metric_names_the_evaluated_ones(tmp_path):
    with pytest.raises(SimulatorError, match="no evaluations of 'f1'; evaluated: accuracy"):
        metrics.to_target(load_table(hand_run(tmp_path), "evals"), 0.5, "f1")


def test_lower_is_better_by_name(tmp_path):
    run = hand_run(tmp_path)
    evals = load_table(run, "evals").assign(metric="eval_loss")
    hit = metrics.to_target(evals, 0.1).set_index("arm")  # the round-0 value 0.1 already is
    assert hit.loc["dense", "round"] == 0 and hit.loc["small", "time_s"] == 0.0


def test_ratios_against_the_baseline(tmp_path):
    run = hand_run(tmp_path)
    ratios = metrics.against_baseline(
        metrics.to_target(load_table(run, "evals"), 0.6), "dense"
    ).set_index("arm")
    assert ratios.loc["small", "bytes_ratio"] == 8.0
    assert ratios.loc["small", "time_reduction_pct"] == 50.0
    assert ratios.loc["dense", "bytes_ratio"] == 1.0
    with pytest.raises(SimulatorError, match="--baseline: arm 'nope'"):
        metrics.against_baseline(ratios.reset_index(), "nope")


def test_latency_breakdown_adds_up_to_the_round(tmp_path):
    run = hand_run(tmp_path)
    table = metrics.latency_breakdown(load_table(run, "clients"), load_table(run, "rounds"))
    dense = table[(table["arm"] == "dense") & (table["round"] == 1)].iloc[0]
    # straggler: 1 + 4 + 5 s, no waiting; client 1: 1 + 2 + 1 s, waits 6 s; dropped excluded
    assert dense[["straggler_download", "straggler_compute", "straggler_upload"]].tolist() == [
        1.0,
        4.0,
        5.0,
    ]
    assert dense["straggler_waiting"] == 0.0
    assert dense[["fleet_download", "fleet_compute", "fleet_upload", "fleet_waiting"]].tolist() == [
        1.0,
        3.0,
        3.0,
        3.0,
    ]


def test_straggler_phases_and_energy(tmp_path):
    sweep = hand_sweep(tmp_path)
    rounds = load_table(sweep, "rounds")
    counts = metrics.straggler_phases(rounds)
    assert counts.loc["dense", "upload"] == 3 and counts.loc["small", "compute"] == 3
    energy = metrics.energy_per_round(rounds)
    assert energy["energy_j_fleet"].tolist() == [7.5] * 6  # mean of 5 and 10 J
    assert energy["energy_j_straggler"].tolist() == [12.0] * 6


def test_bits_per_parameter_needs_the_state(tmp_path, caplog):
    run = hand_run(tmp_path)
    arms = find_arms(run)
    caplog.set_level("INFO")
    assert metrics.bits_per_parameter(arms).empty
    assert "bits/parameter left out" in caplog.text
    np.savez(arms[0].folder / "state-r2.npz", **{"global": np.zeros(1000, np.float32)})
    bits = metrics.bits_per_parameter(arms)
    assert set(bits["arm"]) == {"dense"}
    assert bits["bits_per_param"].tolist() == [16.0, 16.0]  # 8 * 2000 B per client / 1000


def test_bits_per_parameter_borrows_the_count_of_the_same_arm_in_another_seed(tmp_path):
    """Seeds that finished before the manifest recorded the count (and whose states are not
    committed) take it from the same arm of another seed; other arms are not guessed."""
    arms = find_arms(hand_sweep(tmp_path))
    seed_3 = next(a for a in arms if a.seed == 3 and a.arm == "dense")
    np.savez(seed_3.folder / "state-r2.npz", **{"global": np.zeros(1000, np.float32)})
    bits = metrics.bits_per_parameter(arms)
    assert set(bits["arm"]) == {"dense"} and sorted(set(bits["seed"])) == [1, 2, 3]
    assert set(bits["bits_per_param"]) == {16.0}


def test_pareto_front():
    bytes_ = pd.Series([100, 200, 300, 150])
    quality = pd.Series([0.5, 0.7, 0.6, 0.5])
    assert metrics.pareto_front(bytes_, quality).tolist() == [True, True, False, False]
    assert metrics.pareto_front(bytes_, quality, lower_better=True).tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_mean_ci_three_seeds_by_hand():
    mean, half = metrics.mean_ci([1.0, 2.0, 3.0])
    # sd = 1, t(0.975, 2) = 4.302652729911275, half = t * 1 / sqrt(3)
    assert mean == 2.0 and half == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(metrics.mean_ci([5.0])[1]) and metrics.mean_ci([5.0])[0] == 5.0
    assert all(math.isnan(v) for v in metrics.mean_ci([1.0, float("nan")]))
