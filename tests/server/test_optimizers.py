"""Server optimizers: FedAvg adds the mean itself; FedAdam and FedYogi by hand (Reddi et al.)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import real_scenario_dict

from simulator.errors import ScenarioError
from simulator.scenario import load_scenario
from simulator.server.optimizers import (
    OPTIMIZERS,
    AdaptiveOptions,
    FedAdam,
    FedAvg,
    FedAvgOptions,
    FedYogi,
)


def test_fedavg_adds_the_mean_exactly_and_scales_by_its_lr():
    x = np.array([0.1, -0.3, 7.0], np.float32)
    d = np.array([1e-8, 0.2, -7.0], np.float32)
    np.testing.assert_array_equal(FedAvg().step(x, d), x + d)
    np.testing.assert_allclose(FedAvg(FedAvgOptions(lr=0.5)).step(x, d), x + 0.5 * d, rtol=1e-6)
    assert FedAvg().state() == {}


def test_fedadam_two_steps_by_hand():
    opt = FedAdam(AdaptiveOptions(lr=0.1, beta1=0.5, beta2=0.75, tau=0.01))
    x = np.zeros(2, np.float32)
    x = opt.step(x, np.array([1.0, -2.0], np.float32))
    # m = 0.5·Δ, v = 0.25·Δ², step = 0.1·m / (√v + τ) = 0.1·0.5Δ / (0.5|Δ| + 0.01)
    first = [0.1 * 0.5 / (0.5 + 0.01), -0.1 * 1.0 / (1.0 + 0.01)]
    np.testing.assert_allclose(x, first, rtol=1e-6)
    x = opt.step(x, np.array([1.0, 0.0], np.float32))
    m = [0.5 * 0.5 + 0.5 * 1.0, 0.5 * -1.0]
    v = [0.75 * 0.25 + 0.25 * 1.0, 0.75 * 1.0]
    second = [f + 0.1 * mi / (math.sqrt(vi) + 0.01) for f, mi, vi in zip(first, m, v, strict=True)]
    np.testing.assert_allclose(x, second, rtol=1e-6)
    assert x.dtype == np.float32


def test_fedyogi_second_moment_moves_additively_towards_the_square():
    opt = FedYogi(AdaptiveOptions(beta2=0.75))
    v = np.array([1.0, 0.0, 4.0])
    square = np.array([1.0, 4.0, 0.0])
    # v − (1 − β₂)·Δ²·sign(v − Δ²): equal stays, below grows by 0.25·4, above shrinks by 0
    np.testing.assert_allclose(opt.second_moment(v, square), [1.0, 1.0, 4.0])


@pytest.mark.parametrize("cls", [FedAdam, FedYogi])
def test_adaptive_state_round_trips_so_a_resumed_run_continues(cls):
    rng = np.random.default_rng(0)
    updates = [rng.normal(size=5).astype(np.float32) for _ in range(3)]
    straight, resumed = cls(), cls()
    x = y = np.zeros(5, np.float32)
    for d in updates:
        x = straight.step(x, d)
    y = resumed.step(y, updates[0])
    fresh = cls()
    fresh.load(resumed.state())
    for d in updates[1:]:
        y = fresh.step(y, d)
    np.testing.assert_array_equal(x, y)
    assert sorted(straight.state()) == ["m", "v"] and cls().state() == {}


def test_the_registry_builds_each_with_validated_options():
    assert isinstance(OPTIMIZERS.build("fedadam", {"lr": 0.5}), FedAdam)
    assert isinstance(OPTIMIZERS.build("fedyogi"), FedYogi)
    with pytest.raises(ValueError, match="unknown server optimizer 'adam'"):
        OPTIMIZERS.build("adam")
    with pytest.raises(Exception, match="beta1"):
        OPTIMIZERS.build("fedadam", {"beta1": 1.0})


MOMENTUM = '''
import numpy as np
from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    beta: float = 0.5


class Momentum:
    """Server momentum, written outside the package."""

    Options = Options

    def __init__(self, options):
        self.beta, self.velocity = options.beta, None

    def step(self, weights, update):
        v = update if self.velocity is None else self.beta * self.velocity + update
        self.velocity = v
        return weights + v

    def state(self):
        return {} if self.velocity is None else {"velocity": self.velocity}

    def load(self, state):
        self.velocity = state.get("velocity")
'''


@pytest.mark.slow
def test_server_optimizers_run_from_a_scenario_file_user_classes_too(
    write_scenario, tiny_models, tmp_path, monkeypatch
):
    from conftest import real_scenario_dict

    from simulator.experiment import prepare_out, run_scenario
    from simulator.scenario import load_scenario

    (tmp_path / "mypkg_server.py").write_text(MOMENTUM, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    methods = [
        {"name": "fedavg"},
        {"name": "adam", "server_optimizer": "fedadam", "server_optimizer_options": {"lr": 0.01}},
        {
            "name": "momentum",
            "server_optimizer": "mypkg_server:Momentum",
            "server_optimizer_options": {"beta": 0.9},
        },
    ]
    raw = real_scenario_dict(tiny_models["bert"], methods=methods)
    path = write_scenario(raw)
    out = tmp_path / "run"
    scenario = load_scenario(path)
    prepare_out(out, path, scenario)
    folders = run_scenario(scenario, out, progress=False)
    losses = {}
    for folder in folders:
        lines = (folder / "evals.csv").read_text().splitlines()[1:]
        losses[folder.name] = [float(r.split(",")[4]) for r in lines if ",loss," in r]
    assert losses["fedavg"][0] == losses["adam"][0] == losses["momentum"][0]  # same start
    assert len({tuple(v[1:]) for v in losses.values()}) == 3  # three different trajectories


def test_surrogate_arms_and_bad_options_are_refused_at_load(write_scenario):
    from conftest import scenario_dict

    from simulator.errors import ScenarioError
    from simulator.scenario import load_scenario

    raw = scenario_dict()
    raw["methods"][0]["server_optimizer"] = "fedadam"
    with pytest.raises(ScenarioError, match="server_optimizer"):
        load_scenario(write_scenario(raw))


@pytest.mark.parametrize(
    ("optimizer", "options", "problem"),
    [
        ("fedavg", {"lr": 1e308}, "lr: Input should be less than or equal to 1000"),  # NaN loss
        ("fedavg", {"lr": float("inf")}, "lr: Input should be a finite number"),
        ("fedadam", {"tau": 1e308}, "tau: Input should be less than or equal to 1000"),  # frozen
        ("fedyogi", {"beta1": True}, "beta1: Input should be a valid number"),
    ],
)
def test_absurd_server_optimizer_options_are_errors_at_load(
    write_scenario, minilm_path, optimizer, options, problem
):
    """lr = 1e308 ran to the end with a NaN loss and tau = 1e308 left the adapter unchanged,
    both with exit 0; now the scenario does not load."""
    raw = real_scenario_dict(minilm_path)
    raw["methods"][0].update(server_optimizer=optimizer, server_optimizer_options=options)
    with pytest.raises(
        ScenarioError, match=f"server_optimizer_options for '{optimizer}': {problem}"
    ):
        load_scenario(write_scenario(raw))
    assert AdaptiveOptions(lr=1000, tau=1000).tau == 1000  # the bounds themselves are allowed
