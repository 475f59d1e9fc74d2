"""FedAvg weights are sample counts normalised over the updates that arrived."""

from __future__ import annotations

import numpy as np

from simulator.server.aggregation import fedavg


def test_weighted_mean_over_received_only():
    a = np.array([1.0, 0.0], dtype=np.float32)
    b = np.array([0.0, 4.0], dtype=np.float32)
    mean = fedavg([(30, a), (10, b)])
    np.testing.assert_allclose(mean, [0.75, 1.0])
    assert mean.dtype == np.float32


def test_single_update_is_returned_unchanged_and_none_when_empty():
    a = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    np.testing.assert_array_equal(fedavg([(7, a)]), a)
    assert fedavg([]) is None
