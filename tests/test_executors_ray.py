"""Ray as a cluster uses it: on a two-node local cluster every actor asks for the CPUs it trains
with, so Ray places one on each node, and the run files are byte-identical to the inline
executor's."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import real_scenario_dict
from ray.cluster_utils import Cluster

from simulator.errors import SimulatorError
from simulator.executors import RayExecutor
from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import load_scenario

pytestmark = pytest.mark.slow
TABLES = ("rounds.csv", "clients.csv", "evals.csv", "partition.csv")


@pytest.fixture()
def two_nodes():
    """A head and a worker node of one CPU each (separate raylets on this machine)."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_actors_spread_over_two_nodes_and_match_the_inline_files(
    write_scenario, tiny_models, tmp_path, two_nodes, caplog
):
    raw = real_scenario_dict(tiny_models["bert"], server={"rounds": 2})
    raw["training"]["threads"] = 1  # each actor asks for 1 CPU: one fits on each node
    path = write_scenario(raw)
    folders = {}
    for executor in ("inline", "ray"):
        sets = [f"training.executor={executor}"]
        if executor == "ray":
            sets += ["training.workers=2", f"training.executor_options.address={two_nodes.address}"]
        scenario = load_scenario(path, sets)
        out = tmp_path / executor
        prepare_out(out, path, scenario)
        with caplog.at_level(logging.INFO, logger="simulator.executors"):
            (folders[executor],) = run_scenario(scenario, out, progress=False)
    assert "ray: 2 actors on 2 nodes" in caplog.messages
    for name in TABLES:
        inline, ray = (folders[e] / name for e in ("inline", "ray"))
        assert inline.read_bytes() == ray.read_bytes(), name
    with (
        np.load(folders["inline"] / "state-r2.npz") as a,
        np.load(folders["ray"] / "state-r2.npz") as b,
    ):
        np.testing.assert_array_equal(a["global"], b["global"])


def test_a_gpu_request_a_local_ray_cannot_meet_is_a_clear_error(write_scenario, tiny_models):
    import ray

    raw = real_scenario_dict(tiny_models["bert"])
    raw["training"].update(executor="ray", executor_options={"num_gpus": 1})
    scenario = load_scenario(write_scenario(raw), [])
    with pytest.raises(SimulatorError, match=r"asks the Ray cluster for 2 GPU \(it has 0\)"):
        RayExecutor(scenario, 2)
    assert not ray.is_initialized()  # the local Ray it started is shut down again
