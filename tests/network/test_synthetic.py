"""Generated links: constant, the paper's straggler tail, two-state Markov."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.network import synthetic
from simulator.scenario import MarkovLink, StragglerTailLink


def test_constant_link_transfer_is_bits_over_rate():
    trace = synthetic.constant(20e6)
    assert trace.transfer_time(1024e6, 0.0) == pytest.approx(409.6)
    assert trace.mean_bps == pytest.approx(20e6)


def test_lognormal_jitter_has_unit_mean_and_steps():
    trace = synthetic.lognormal_jitter(np.random.default_rng(0), 0.3, 60.0, 3600.0)
    assert trace.duration_s == 3600.0
    assert trace.mean_bps == pytest.approx(1.0, abs=0.12)
    bins = trace.binned_bps(60.0)
    assert len(bins) == 60 and len(np.unique(bins)) == 60
    flat = synthetic.lognormal_jitter(np.random.default_rng(0), 0.0, 60.0, 3600.0)
    assert np.all(flat.binned_bps(60.0) == 1.0)


def test_straggler_tail_fraction_and_bands():
    spec = StragglerTailLink(kind="straggler_tail")
    pool, means = synthetic.straggler_tail(spec, 1000, np.random.default_rng(1))
    mbps = means / 1e6
    slow = mbps < 2.0 + 1e-9
    assert slow.sum() == 200  # exactly 20% of clients straggle
    assert mbps[slow].min() >= 0.5 and mbps[~slow].min() >= 5.0 and mbps.max() <= 20.0
    # log-uniform between 5 and 20: median near the geometric mean 10
    assert np.median(mbps[~slow]) == pytest.approx(10.0, rel=0.1)
    assert len(pool) == spec.pool


def test_markov_alternates_between_two_rates_with_mean_dwell():
    spec = MarkovLink(
        kind="markov",
        good_mbps=10.0,
        bad_mbps=1.0,
        mean_good_s=30.0,
        mean_bad_s=10.0,
        duration_s=20_000.0,
        pool=4,
    )
    pool = synthetic.markov(spec, np.random.default_rng(2))
    for trace in pool:
        mbps = trace.binned_bps(0.5) / 1e6
        good, bad = np.isclose(mbps, 10.0).mean(), np.isclose(mbps, 1.0).mean()
        assert good + bad > 0.95  # only bins that straddle a switch (~1 in 40) differ
        assert good == pytest.approx(0.75, abs=0.08)  # 30 s good vs 10 s bad on average
        assert trace.mean_bps / 1e6 == pytest.approx(7.75, rel=0.08)
