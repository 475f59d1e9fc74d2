"""Where local training runs: inline, a local process pool, or Ray.

All three run the same `client_update` on the same jobs; a client-round's randomness
comes only from its own seed scope, and every process does its math with the scenario's
`training.threads` torch threads (float sums depend on the thread count), so the results are
identical whichever executor runs them and however many workers it has. Each pool or Ray worker
builds its own `RealTask` (one base model per worker process) from the resolved scenario; the
main process keeps one for evaluation. Workers × threads above the host's cores still gives the
same files, only slower. Ray is an optional extra: `pip install 'fstq-sim[ray]'`.

Workers end with the process that started them, even when it is killed with SIGKILL and runs
no cleanup: each pool worker and Ray actor watches its parent (`_end_with_parent`), and a local
Ray's own agents, which outlive a killed driver by a minute or more, are ended by a reaper
(`_REAPER`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

from simulator.errors import SimulatorError
from simulator.scenario import Scenario
from simulator.training.client import Arm, Job, Update, client_update
from simulator.training.models import pick_device
from simulator.training.task import RealTask

log = logging.getLogger(__name__)

PARENT_POLL_S = 0.5  # how soon a worker notices that its parent has died
CONNECT_TIMEOUT_S = 5.0  # how long an existing Ray cluster may take to answer a TCP connect


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


def _end_with_parent(parent: int) -> None:
    """End this process once `parent` is gone, whatever killed it.

    A daemon thread polls the parent pid (an orphan is re-parented, so getppid changes) rather
    than Linux's PR_SET_PDEATHSIG: that signal fires when the *thread* that spawned the worker
    ends, not its process (a pool may spawn from a helper thread), and it exists on Linux only.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)  # no cleanup: the parent that would receive results is gone

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


_worker_task: RealTask | None = None


def _init_worker(scenario: Scenario, parent: int) -> None:
    global _worker_task
    _end_with_parent(parent)
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
            initargs=(scenario, os.getpid()),
        )

    def run(self, arm: Arm, jobs: list[Job]) -> list[Update]:
        """Train the jobs in parallel; results come back in job order."""
        return list(self.pool.map(_work, [arm] * len(jobs), jobs))

    def close(self) -> None:
        """Stop the workers."""
        self.pool.shutdown(cancel_futures=True)


class _RayWorker:
    def __init__(self, scenario: Scenario) -> None:
        _init_worker(scenario, os.getppid())  # its raylet; Ray ends it if the driver dies

    def node(self) -> str:
        """The Ray node this actor runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def update(self, arm: Arm, index: int, job: Job) -> tuple[int, Update]:
        return index, _work(arm, job)


# Run as `python -c`: waits for EOF on stdin (its driver ended, however) and kills the processes
# named on its command line that are still the ones it saw (pid and start time, so a reused pid
# is spared). Linux: on other systems Ray starts its own reaper.
_REAPER = """
import os, sys
def began(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
seen = {int(pid): began(pid) for pid in sys.argv[1:]}
sys.stdin.buffer.read()
for pid, start in seen.items():
    if start is not None and began(pid) == start:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
"""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SimulatorError(
            "training.executor = 'ray' needs Ray. Fix: pip install 'fstq-sim[ray]', "
            "or use executor = 'process'"
        ) from None
    return ray


def _check_reachable(address: str, key: str) -> None:
    """Fail in seconds where ray.init would wait minutes for a cluster that does not answer."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():  # "auto" / "local": Ray finds or starts the cluster itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise SimulatorError(
            f"{key} = {address!r}: no Ray cluster answers there ({error}). Fix: start it "
            "(ray start --head on that machine) or correct the address; leave "
            "training.executor_options.address and $RAY_ADDRESS unset to run Ray on this machine"
        ) from None


class RayExecutor:
    """Ray actors (one model each) on this machine or an existing cluster; each asks for the
    CPUs (training threads) and GPU it uses, so Ray spreads them over nodes, and each job goes
    to whichever actor is free."""

    def __init__(self, scenario: Scenario, workers: int) -> None:
        self.ray = ray = _import_ray()
        from ray.util import ActorPool

        spec = scenario.training
        options = spec.executor_options
        cpus = spec.threads if options.num_cpus is None else options.num_cpus
        gpus = options.num_gpus
        if gpus is None:
            gpus = 1 if pick_device(spec.device).type == "cuda" else 0
        self.actors: list[Any] = []
        self.reaper: subprocess.Popen | None = None
        self.connected = not ray.is_initialized()  # by this executor, which disconnects it
        local = self.connected and self._connect(options.address, workers * cpus)
        self._check_resources({"CPU": workers * cpus, "GPU": workers * gpus}, local)
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(_RayWorker)
        self.actors = [actor.remote(scenario) for _ in range(workers)]
        self.nodes: list[str] = ray.get([a.node.remote() for a in self.actors])  # all loaded
        log.info("ray: %d actors on %d nodes", workers, len(set(self.nodes)))
        self.pool = ActorPool(self.actors)

    def _connect(self, address: str | None, cpus: float) -> bool:
        """An existing cluster if one is named, else a local one that fits every actor (Ray's
        CPUs are a count to schedule by: more actors than cores is slower, not different).
        True when it started a local one."""
        key = "training.executor_options.address"
        if address is None and os.environ.get("RAY_ADDRESS"):
            address, key = os.environ["RAY_ADDRESS"], "$RAY_ADDRESS"
        if address is None:
            self._start_local(cpus)
            return True
        _check_reachable(address, key)
        try:
            self.ray.init(address=address, log_to_driver=False)
        except ConnectionError as error:
            raise SimulatorError(
                f"{key} = {address!r}: {error}. Fix: start the cluster or correct the address"
            ) from None
        return False

    def _start_local(self, cpus: float) -> None:
        """Ray on this machine, with a reaper for the processes it starts (Linux)."""
        import psutil  # Ray ships it

        before = {p.pid for p in psutil.Process().children(recursive=True)}
        cores = os.cpu_count() or 1
        self.ray.init(num_cpus=max(cores, cpus), include_dashboard=False, log_to_driver=False)
        if sys.platform == "linux":
            started = [p.pid for p in psutil.Process().children(recursive=True)]
            self.reaper = subprocess.Popen(
                [sys.executable, "-c", _REAPER, *(str(p) for p in started if p not in before)],
                stdin=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C at the terminal reaches the driver only
            )

    def _check_resources(self, need: dict[str, float], local: bool) -> None:
        """A request the cluster cannot meet: an error on a cluster this executor started, a
        warning on an existing one (its autoscaler may add nodes; until then actors wait)."""
        have = self.ray.cluster_resources()
        short = [
            f"{need[k]:g} {k} (it has {have.get(k, 0):g})" for k in need if need[k] > have.get(k, 0)
        ]
        if not short:
            return
        message = (
            f"training.workers × executor_options asks the Ray cluster for {', '.join(short)}. "
            "Fix: fewer workers, or a smaller executor_options.num_cpus / num_gpus "
            "(a fraction shares a GPU)"
        )
        if local:
            self.close()
            raise SimulatorError(message)
        log.warning("%s; the actors wait until the cluster has room", message)

    def run(self, arm: Arm, jobs: list[Job]) -> list[Update]:
        """Each job to whichever actor is free (results as they finish, not in turn, so a long
        job holds up no other actor); results come back in job order."""
        arm_ref = self.ray.put(arm)  # sent once, not once per job
        done = self.pool.map_unordered(
            lambda actor, item: actor.update.remote(arm_ref, *item), enumerate(jobs)
        )
        return [update for _, update in sorted(done, key=lambda pair: pair[0])]

    def close(self) -> None:
        """Stop the actors, and the local Ray this executor started."""
        if self.connected:
            self.ray.shutdown()  # ends the actors this driver owns, and a local Ray
            self.connected = False
            if self.reaper is not None and self.reaper.stdin is not None:
                self.reaper.stdin.close()  # what shutdown left, the reaper ends
                self.reaper.wait()
        else:
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
