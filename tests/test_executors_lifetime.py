"""Workers end with their parent: a run killed with SIGKILL (no cleanup code runs) leaves no pool
worker, Ray actor or Ray process behind. Linux: processes are read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, real_scenario_dict

pytestmark = pytest.mark.slow


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]  # the name may hold spaces
    return state, int(ppid)


def _descendants(root: int) -> set[int]:
    """Every live process below root."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] != "Z":
            parents[int(entry.name)] = stat[1]
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    """Those of pids that still run (a zombie has ended; only its parent has not reaped it)."""
    return {pid for pid in pids if (stat := _stat(pid)) and stat[0] != "Z"}


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_workers_end_within_seconds_of_a_sigkilled_run(
    write_scenario, tiny_models, tmp_path, executor
):
    raw = real_scenario_dict(tiny_models["bert"], server={"rounds": 10_000})
    raw["training"].update(executor=executor, workers=2, threads=1)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "simulator.cli", "run", str(write_scenario(raw))]
    run = subprocess.Popen(
        [*command, "--out", str(out), "--quiet", "--no-cache"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        rounds = out / "fp16" / "rounds.csv"
        deadline = time.monotonic() + 180
        while not (rounds.exists() and len(rounds.read_text().splitlines()) > 1):
            assert run.poll() is None and time.monotonic() < deadline, "the run never trained"
            time.sleep(0.2)
        workers = _descendants(run.pid)
        assert len(workers) >= 2  # the pool's two workers, or Ray's actors and its own processes
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 10
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in _alive(workers)}
        assert not left
    finally:
        run.kill()
        run.wait()
        for pid in _alive(workers):  # the old behaviour: clean up what the run left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
