"""Executors without a model: the inline executor's job order and task, which executor the
scenario names, a process pool that spawns nothing until it has jobs, the Ray import error and
Ray's options and unreachable cluster. (That the executors give identical files with a real
model is tests/training/test_real.py; Ray on two nodes is tests/test_executors_ray.py; workers
ending with their parent is tests/test_executors_lifetime.py.)"""

from __future__ import annotations

import multiprocessing
import socket
import sys
import time

import numpy as np
import pytest
from conftest import scenario_dict

from simulator import executors
from simulator.errors import SimulatorError
from simulator.executors import InlineExecutor, ProcessExecutor, RayExecutor, make_executor
from simulator.scenario import Scenario
from simulator.training.client import Arm, Job


def _scenario(**training) -> Scenario:
    raw = scenario_dict(
        training={
            "mode": "real",
            "model": "minilm",
            "data": {"kind": "synthetic"},
            **training,
        },
        methods=[{"name": "fp16", "codec": "fp16"}],
    )
    return Scenario.model_validate(raw)


def _arm() -> Arm:
    return Arm.of(_scenario().methods[0])


def _jobs(clients: list[int]) -> list[Job]:
    return [Job(client, 3, np.full(4, float(client))) for client in clients]


class FakeTask:
    """Stands in for RealTask: the inline executor only hands it to client_update."""


@pytest.fixture()
def calls(monkeypatch) -> list[tuple]:
    """Replace client_update in the executors module with one that records its arguments."""
    seen: list[tuple] = []

    def fake_update(task, arm, job):
        seen.append((task, arm, job.client))
        return ("update", job.client)

    monkeypatch.setattr(executors, "client_update", fake_update)
    return seen


def test_the_inline_executor_trains_the_jobs_in_order_on_its_task(calls):
    task, arm = FakeTask(), _arm()
    executor = InlineExecutor(task)
    updates = executor.run(arm, _jobs([5, 1, 3]))
    assert updates == [("update", 5), ("update", 1), ("update", 3)]
    assert [c[2] for c in calls] == [5, 1, 3]
    assert all(c[0] is task and c[1] is arm for c in calls)
    executor.close()
    assert executor.run(arm, []) == []  # closing releases nothing, it still runs
    assert len(calls) == 3


def test_the_inline_executor_lets_a_training_error_through(monkeypatch):
    def broken(task, arm, job):
        raise RuntimeError(f"client {job.client} failed")

    monkeypatch.setattr(executors, "client_update", broken)
    with pytest.raises(RuntimeError, match="client 2 failed"):
        InlineExecutor(FakeTask()).run(_arm(), _jobs([2, 4]))


def test_make_executor_defaults_to_inline_on_the_main_task():
    task = FakeTask()
    executor = make_executor(_scenario(), task)
    assert isinstance(executor, InlineExecutor) and executor.task is task


def test_a_process_pool_has_the_named_workers_and_spawns_none_without_jobs():
    before = set(multiprocessing.active_children())
    executor = make_executor(_scenario(executor="process", workers=3), FakeTask())
    try:
        assert isinstance(executor, ProcessExecutor)
        assert executor.pool._max_workers == 3
        assert executor.pool._mp_context.get_start_method() == "spawn"  # no forked torch state
        assert executor.run(_arm(), []) == []
        assert set(multiprocessing.active_children()) == before
    finally:
        executor.close()


def test_ray_without_the_package_says_how_to_install_it(monkeypatch):
    scenario = _scenario(executor="ray")  # loaded while Ray is there; gone when it runs
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SimulatorError, match=r"pip install 'fstq-sim\[ray\]'.*'process'"):
        make_executor(scenario, FakeTask())
    with pytest.raises(
        ValueError, match=r"executor = 'ray' needs ray.*pip install 'fstq-sim\[ray\]'"
    ):
        _scenario(executor="ray")  # a scenario load without Ray names the extra
    with pytest.raises(SimulatorError, match="needs Ray"):
        RayExecutor(_scenario(), 2)


def test_executor_options_are_rays_and_validated():
    options = {"address": "10.0.0.5:6379", "num_cpus": 0.5, "num_gpus": 0.25}
    spec = _scenario(executor="ray", executor_options=options).training.executor_options
    assert (spec.address, spec.num_cpus, spec.num_gpus) == ("10.0.0.5:6379", 0.5, 0.25)
    with pytest.raises(ValueError, match="executor_options are Ray's: set executor = 'ray'"):
        _scenario(executor="process", executor_options={"num_cpus": 1})
    with pytest.raises(ValueError, match="num_gpus"):
        _scenario(executor="ray", executor_options={"num_gpus": -1})


def _closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("via", ["option", "environment"])
def test_an_unreachable_ray_cluster_is_a_clear_error_within_seconds(monkeypatch, via):
    """ray.init waits minutes (it retries the GCS) for a cluster that does not answer."""
    address = f"127.0.0.1:{_closed_port()}"
    if via == "option":
        scenario = _scenario(executor="ray", executor_options={"address": address})
        key = "training.executor_options.address"
    else:
        monkeypatch.setenv("RAY_ADDRESS", f"ray://{address}")
        scenario, key = _scenario(executor="ray"), "$RAY_ADDRESS"
    started = time.monotonic()
    with pytest.raises(SimulatorError) as error:
        RayExecutor(scenario, 2)
    assert time.monotonic() - started < 10
    assert str(error.value).startswith(f"{key} = '{'ray://' * (via != 'option')}{address}'")
    assert "no Ray cluster answers there" in str(error.value)
    assert "ray start --head" in str(error.value)
    import ray

    assert not ray.is_initialized()
