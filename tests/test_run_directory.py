"""Run directories under real processes: one writer (a lock the OS drops when its holder is
killed), two runs started together, and a --force start killed before the new run started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, scenario_dict

from simulator.cli import main

TABLES = ("rounds.csv", "clients.csv", "evals.csv")

# `fstq-sim ARGS...` that, after its first round is on disk, touches READY and sleeps SECONDS
HOLD = """
import sys, time
from pathlib import Path
from simulator.cli import main
from simulator.recorder import ArmRecorder

ready, seconds, args = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
original = ArmRecorder.append

def append(self, rows, state):
    original(self, rows, state)
    if "rounds" in rows and not ready.exists():
        ready.touch()
        time.sleep(seconds)

ArmRecorder.append = append
sys.exit(main(args))
"""

# `fstq-sim ARGS...` killed (SIGKILL) while its run starts, before the first round
KILL_AT_START = """
import os, signal, sys
import simulator.experiment as experiment
from simulator.cli import main

def trainers(scenario, cache=None):
    os.kill(os.getpid(), signal.SIGKILL)

experiment.trainers = trainers
sys.exit(main(sys.argv[1:]))
"""


def _spawn(script: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never finished its first round"
        time.sleep(0.05)


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _same(a: Path, b: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _scenario(write_scenario) -> str:
    return str(write_scenario(scenario_dict(server={"rounds": 4})))


def _reference(path: str, folder: Path) -> None:
    assert main(["run", path, "--out", str(folder), "--quiet"]) == 0


@pytest.mark.slow
def test_a_run_in_progress_is_locked_and_a_sigkill_releases_it(write_scenario, tmp_path, capsys):
    path, out, ready = _scenario(write_scenario), tmp_path / "run", tmp_path / "ready"
    holder = _spawn(HOLD, ready, 120, "run", path, "--out", out, "--quiet")
    try:
        _wait_for(ready, holder)
        before = _files(out)
        assert main(["run", path, "--out", str(out), "--force", "--quiet"]) == 2
        assert "in use by another fstq-sim process" in capsys.readouterr().err
        assert main(["run", "--resume", str(out), "--quiet"]) == 2
        assert "in use by another fstq-sim process" in capsys.readouterr().err
        assert _files(out) == before  # neither touched a byte
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    assert main(["run", "--resume", str(out), "--quiet"]) == 0  # the OS dropped the lock
    _reference(path, tmp_path / "ref")
    _same(out / "dense", tmp_path / "ref" / "dense", TABLES)


@pytest.mark.slow
def test_two_runs_into_one_out_started_together_leave_one_whole_run(write_scenario, tmp_path):
    path, out = _scenario(write_scenario), tmp_path / "run"
    procs = [
        _spawn(HOLD, tmp_path / f"ready-{i}", 2, "run", path, "--out", out, "--quiet")
        for i in (0, 1)
    ]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another fstq-sim process" in loser or "already holds results" in loser
    assert "Traceback" not in loser
    _reference(path, tmp_path / "ref")
    assert _files(out / "dense").keys() == _files(tmp_path / "ref" / "dense").keys()
    _same(out / "dense", tmp_path / "ref" / "dense", (*TABLES, "summary.json"))
    assert (out / "scenario.json").is_file()  # so it can be resumed and replayed
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_a_force_start_killed_before_the_run_started_is_put_back(
    write_scenario, tmp_path, capsys, caplog
):
    path, out = _scenario(write_scenario), tmp_path / "run"
    _reference(path, out)
    before = _files(out)
    killed = _spawn(KILL_AT_START, "run", path, "--out", out, "--force", "--quiet")
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / f".run.replaced-{killed.pid}").is_dir()  # the old results, set aside
    assert "dense" not in {p.name for p in out.iterdir()}  # the new run had not started
    capsys.readouterr()
    assert main(["run", path, "--out", str(out), "--quiet"]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert "put back from .run.replaced-" in caplog.text
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_set_aside_run_beside_other_results_is_named_and_kept(write_scenario, tmp_path, capsys):
    path, out = _scenario(write_scenario), tmp_path / "run"
    _reference(path, out)
    aside = tmp_path / ".run.replaced-999999"
    out.rename(aside)
    _reference(path, tmp_path / "other")
    (tmp_path / "other").rename(out)
    kept = _files(aside)
    assert main(["run", path, "--out", str(out), "--force", "--quiet"]) == 2
    assert f"{aside}: an earlier run directory of {out}" in capsys.readouterr().err
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert _files(aside) == kept
    # what a started --force run was deleting when it was killed is deleted at the next start
    discard = tmp_path / ".run.discard-999998"
    aside.rename(discard)
    assert main(["run", path, "--out", str(out), "--force", "--quiet"]) == 0
    assert not discard.exists()
