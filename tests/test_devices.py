"""Device classes, speeds, energy and availability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.devices import CATALOGUE, AvailabilityModel, build_fleet
from simulator.errors import ScenarioError, TraceError
from simulator.scenario import (
    AlwaysAvailable,
    BernoulliAvailability,
    DeviceSpec,
    Population,
    SessionAvailability,
)
from simulator.server.selection import Selection


def test_mix_gives_exact_counts_and_speeds_inside_class_ranges():
    pop = Population(clients=1000, per_round=10, mix={"low_phone": 0.3, "laptop": 0.7})
    fleet = build_fleet(pop, {}, seed=1, source="s")
    names = np.array(fleet.class_names())
    assert (names == "low_phone").sum() == 300 and (names == "laptop").sum() == 700
    flops = np.asarray(fleet.flops)
    low = flops[names == "low_phone"] / 1e12
    p10, p90 = np.percentile(low, [10, 90])
    assert 0.008 < p10 < 0.012 and 0.04 < p90 < 0.06  # lognormal with catalogue p10/p90
    assert np.median(flops[names == "laptop"]) / 1e12 == pytest.approx(math.sqrt(20), rel=0.1)


def test_fleet_is_deterministic_per_seed():
    pop = Population(clients=50, per_round=5, mix={"mid_phone": 1, "flagship_phone": 1})
    a, b = (build_fleet(pop, {}, seed=3, source="s") for _ in range(2))
    assert np.array_equal(a.flops, b.flops) and np.array_equal(a.class_index, b.class_index)
    c = build_fleet(pop, {}, seed=4, source="s")
    assert not np.array_equal(a.flops, c.flops)


def test_energy_uses_class_powers_and_overrides():
    pop = Population(clients=1, per_round=1, mix={"jetson_orin_nano": 1})
    spec = {"jetson_orin_nano": DeviceSpec(p_compute_w=4.0, p_tx_w=2.0, p_rx_w=0.5)}
    fleet = build_fleet(pop, spec, seed=0, source="s")
    # 4 W x 5 s + 2 W x 409.6 s + 0.5 W x 10 s
    assert fleet.energy_j(0, 10.0, 5.0, 409.6) == pytest.approx(844.2)
    assert CATALOGUE["jetson_orin_nano"].p_compute_w == 4.0


def test_new_class_must_be_complete_and_unknown_class_is_named():
    pop = Population(clients=2, per_round=1, mix={"watch": 1})
    with pytest.raises(ScenarioError, match="devices.watch: new device class lacks"):
        build_fleet(pop, {"watch": DeviceSpec(tflops=(0.001, 0.002))}, seed=0, source="s.toml")
    with pytest.raises(ScenarioError, match="population.mix.watch: unknown device class"):
        build_fleet(pop, {}, seed=0, source="s.toml")
    full = DeviceSpec(tflops=(0.001, 0.002), p_compute_w=1, p_tx_w=1, p_rx_w=1)
    assert build_fleet(pop, {"watch": full}, seed=0, source="s").class_names() == ["watch"] * 2


def test_bernoulli_dropout_rate_and_common_numbers():
    model = AvailabilityModel(
        BernoulliAvailability(kind="bernoulli", p_drop=0.1), seed=5, clients=20_000
    )
    clients = np.arange(20000)
    dropped = model.dropped(3, clients)
    assert dropped.mean() == pytest.approx(0.1, abs=0.01)
    # a client's fate depends on (round, client), not on who else is drawn with it
    assert model.dropped(3, clients[[17, 4]]).tolist() == dropped[[17, 4]].tolist()
    always = AvailabilityModel(AlwaysAvailable(kind="always"), seed=5, clients=20_000)
    assert not always.dropped(3, clients).any()
    assert always.online_until(3, 12.0) == math.inf


def test_generated_sessions_alternate_and_select_only_online():
    spec = SessionAvailability(kind="sessions", mean_online_s=100.0, mean_offline_s=100.0)
    model = AvailabilityModel(spec, seed=2, clients=200)
    online_time = 0.0
    t = 0.0
    while t < 50_000:  # walk client 0's timeline in 1 s steps
        end = model.online_until(0, t)
        if end > t:
            online_time += end - t
            t = end
        t += 1.0
    assert online_time / 50_000 == pytest.approx(0.5, abs=0.08)
    chosen = Selection(model, seed=2, clients=200).cohort(0, 500.0, 20)
    assert len(chosen) == 20
    assert all(model.online_until(int(c), 500.0) > 500.0 for c in chosen)


def test_session_file_intervals_loop_and_map_clients(tmp_path):
    path = tmp_path / "sessions.csv"
    path.write_text("client,start_s,end_s\n0,0,10\n0,20,30\n5,5,40\n")
    model = AvailabilityModel(
        SessionAvailability(kind="sessions", file=str(path)), seed=0, clients=8
    )
    assert model.online_until(0, 3.0) == 10.0
    assert model.online_until(0, 15.0) == 15.0  # offline
    assert model.online_until(0, 43.0) == 50.0  # looped: period 40, interval [0, 10) + 40
    assert model.online_until(1, 6.0) == 40.0  # client 1 uses the file's second id (5)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,2\n", "expected columns client,start_s,end_s"),
        ("client,start_s,end_s\n", "no session rows"),
        ("client,start_s,end_s\n0,x,3\n", "line 2: non-numeric"),
        ("client,start_s,end_s\n0,5,3\n", "line 2: bad interval"),
        ("client,start_s,end_s\n0,0,5\n0,3,8\n", "client 0: overlapping"),
    ],
)
def test_bad_session_files(tmp_path, text, match):
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=match):
        AvailabilityModel(SessionAvailability(kind="sessions", file=str(path)), seed=0, clients=8)


def _probe_each(model, clients, times, until):
    """What looking at every time in turn finds (the reference for first_online)."""
    for j, t in enumerate(times, start=1):
        if t > until:
            return None
        if any(model.online_until(c, t) > t for c in clients):
            return j, t
    return None


@pytest.mark.parametrize("seed", range(6))
def test_first_online_finds_what_probing_every_look_finds(seed, tmp_path):
    rng = np.random.default_rng(seed)
    generated = SessionAvailability(kind="sessions", mean_online_s=5.0, mean_offline_s=4000.0)
    path = tmp_path / "sessions.csv"
    rows = [f"{c},{s},{s + rng.uniform(1, 30)}" for c in (0, 2) for s in (500.0, 9000.0)]
    path.write_text("client,start_s,end_s\n" + "\n".join(rows) + "\n")
    from_file = SessionAvailability(kind="sessions", file=str(path))
    for spec in (generated, from_file):
        model = AvailabilityModel(spec, seed=seed, clients=3)
        start = float(rng.uniform(0, 5000))
        for step in (60.0, 7.0):
            looks = [start + step * k for k in range(1, 20_000)]
            expected = _probe_each(model, range(3), looks, start + 60_000)
            assert model.first_online(range(3), looks, start + 60_000) == expected
            assert expected is not None or step == 60.0  # the 7 s grid always hits someone


def test_session_file_ids_must_exist_in_the_population(tmp_path):
    path = tmp_path / "sessions.csv"
    path.write_text("client,start_s,end_s\n0,0,10\n999,5,40\n")
    with pytest.raises(TraceError, match=r"client 999: the population has 20 clients"):
        AvailabilityModel(SessionAvailability(kind="sessions", file=str(path)), seed=0, clients=20)
    path.write_text("client,start_s,end_s\n0,0,10\n1,5,40\n")
    model = AvailabilityModel(SessionAvailability(kind="sessions", file=str(path)), 0, 5)
    assert model.coverage(5) == (
        "sessions file: rows for 2 of 5 clients; a client without rows follows the file's "
        "(c mod 2)-th client in id order"
    )
    assert model.online_until(3, 6.0) == 40.0  # client 3 follows client 1


DEVICE_MODEL = '''
import numpy as np
from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    at: float = 1.0  # 0: every client at its class's p10, 1: at its p90


class Fixed:
    """Every client at one point between its class's p10 and p90."""

    Options = Options

    def __init__(self, options):
        self.at = options.at

    def tflops(self, p10, p90, gen):
        return p10 + self.at * (p90 - p10)
'''


def test_a_user_device_model_sets_the_speeds_from_a_scenario(write_scenario, tmp_path, monkeypatch):
    from conftest import scenario_dict

    from simulator.scenario import load_scenario

    (tmp_path / "mypkg_devices.py").write_text(DEVICE_MODEL, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    population = {
        "clients": 4,
        "per_round": 2,
        "mix": {"jetson_orin_nano": 0.5, "mid_phone": 0.5},
        "device_model": "mypkg_devices:Fixed",
        "device_model_options": {"at": 0.5},
    }
    scenario = load_scenario(write_scenario(scenario_dict(population=population)))
    fleet = build_fleet(scenario.population, {}, seed=0, source="s")
    expected = {"jetson_orin_nano": 3.0e12, "mid_phone": 0.09e12}  # midpoints of the classes
    names = fleet.class_names()
    assert fleet.flops == pytest.approx([expected[names[c]] for c in range(4)])
    bad = dict(population, device_model_options={"at": 0.5, "speed": 2})
    with pytest.raises(ScenarioError, match="device_model_options for 'mypkg_devices:Fixed': "):
        load_scenario(write_scenario(scenario_dict(population=bad)))
    with pytest.raises(ScenarioError, match="unknown device model 'gauss'; use one of lognormal"):
        load_scenario(
            write_scenario(scenario_dict(population=dict(population, device_model="gauss")))
        )
