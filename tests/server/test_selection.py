"""Client selection (simulator/server/selection.py): uniform among the online clients, the
same draws for every arm (the "selection" seed scope)."""

from __future__ import annotations

import numpy as np

from simulator.devices import AvailabilityModel
from simulator.scenario import AlwaysAvailable, SessionAvailability
from simulator.server.selection import Selection


def test_selection_without_replacement_and_same_for_all_arms():
    model = AvailabilityModel(AlwaysAvailable(kind="always"), seed=5, clients=20_000)
    selection = Selection(model, seed=5, clients=100)
    chosen = selection.cohort(2, 0.0, 10)
    assert len(set(chosen.tolist())) == 10
    assert np.array_equal(chosen, selection.cohort(2, 999.0, 10))
    assert not np.array_equal(chosen, selection.cohort(3, 0.0, 10))


def test_one_client_is_online_and_not_busy_and_none_when_nobody_is():
    spec = SessionAvailability(kind="sessions", mean_online_s=100.0, mean_offline_s=100.0)
    model = AvailabilityModel(spec, seed=3, clients=50)
    selection = Selection(model, seed=3, clients=50)
    online = {c for c in range(50) if model.online_until(c, 700.0) > 700.0}
    busy = set(sorted(online)[: len(online) - 1])  # all online clients busy but one
    (free,) = online - busy
    assert selection.one(7, 700.0, busy) == free
    assert selection.one(7, 700.0, busy | {free}) is None
    assert selection.one(8, 700.0, set()) in online
