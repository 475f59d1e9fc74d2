"""Where local training runs: inline, a local process pool, or Ray.

All three run the same `client_update` on the same jobs; a client-round's randomness
comes only from its own seed scope, and every process does its math with the scenario's
`training.threads` torch threads (float sums depend on the thread count), so the results are
identical whichever executor runs them and however many workers it has. Each pool or Ray worker
builds its own `RealTask` (one base model per worker process) from the resolved scenario; the
main process keeps one for evaluation. Workers × threads above the host's cores still gives the
same files, only slower. Ray is an optional extra: `pip install 'fstq-sim[ray]'`.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol

from simulator.errors import SimulatorError
from simulator.scenario import Scenario
from simulator.training.client import Arm, Job, Update, client_update
from simulator.training.task import RealTask


class Executor(Protocol):
    """Runs a round's client jobs and returns their updates in job order."""

    def run(self, arm: Arm, jobs: list[Job]) -> list[Update]:
        """Train every job."""

    def close(self) -> None:
        """Release workers."""


class InlineExecutor:
    """In this process, one client after another, on the main process's model."""

    def __init__(self, task: RealTask) -> None:
        self.task = task

    def run(self, arm: Arm, jobs: list[Job]) -> list[Update]:
        """Train the jobs in order."""
        return [client_update(self.task, arm, job) for job in jobs]

    def close(self) -> None:
        """Nothing to release."""


_worker_task: RealTask | None = None


def _init_worker(scenario: Scenario) -> None:
    global _worker_task
    _worker_task = RealTask(scenario)  # sets the scenario's torch thread count


def _work(arm: Arm, job: Job) -> Update:
    assert _worker_task is not None
    return client_update(_worker_task, arm, job)


class ProcessExecutor:
    """A local pool of spawned worker processes, each with its own model."""

    def __init__(self, scenario: Scenario, workers: int) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(scenario,),
        )

    def run(self, arm: Arm, jobs: list[Job]) -> list[Update]:
        """Train the jobs in parallel; results come back in job order."""
        return list(self.pool.map(_work, [arm] * len(jobs), jobs))

    def close(self) -> None:
        """Stop the workers."""
        self.pool.shutdown(cancel_futures=True)


class _RayWorker:
    def __init__(self, scenario: Scenario) -> None:
        _init_worker(scenario)

    def update(self, arm: Arm, job: Job) -> Update:
        return _work(arm, job)


class RayExecutor:
    """Ray actors (one model each), for users who outgrow one machine."""

    def __init__(self, scenario: Scenario, workers: int) -> None:
        try:
            import ray
        except ImportError:
            raise SimulatorError(
                "training.executor = 'ray' needs Ray. Fix: pip install 'fstq-sim[ray]', "
                "or use executor = 'process'"
            ) from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        actor = ray.remote(num_cpus=0)(_RayWorker)
        self.actors = [actor.remote(scenario) for _ in range(workers)]

    def run(self, arm: Arm, jobs: list[Job]) -> list[Update]:
        """Spread the jobs over the actors; results come back in job order."""
        refs = [
            self.actors[i % len(self.actors)].update.remote(arm, job) for i, job in enumerate(jobs)
        ]
        return self.ray.get(refs)

    def close(self) -> None:
        """Stop the actors."""
        for actor in self.actors:
            self.ray.kill(actor)


def make_executor(scenario: Scenario, task: RealTask) -> Executor:
    """The executor the scenario names."""
    spec = scenario.training
    if spec.executor == "process":
        return ProcessExecutor(scenario, spec.workers)
    if spec.executor == "ray":
        return RayExecutor(scenario, spec.workers)
    return InlineExecutor(task)
