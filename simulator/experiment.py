"""Run every method arm of a scenario into a run directory (fresh or resumed).

Each arm gets a fresh SimPy environment over the same World, so all arms see the same clients,
links, selections and dropouts. The summary of an arm is computed from its CSV files, so a
resumed run summarises exactly what an uninterrupted one would.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from simulator.cache import ReplayCache
from simulator.engine import Engine
from simulator.errors import RunDirError
from simulator.network.link import trace_files
from simulator.recorder import (
    RUN_FILE,
    ArmRecorder,
    EvalRow,
    lower_is_better,
    read_json,
    write_run_files,
)
from simulator.rounds import RoundOutcome
from simulator.scenario import Method, Scenario, resolved_dict, scenario_from_dict
from simulator.training.base import Trainer
from simulator.training.surrogate import SurrogateTrainer
from simulator.world import World, build_world

log = logging.getLogger(__name__)

TrainerFactory = Callable[[Method, ArmRecorder], Trainer]


@contextmanager
def trainers(scenario: Scenario, cache: ReplayCache | None = None) -> Iterator[TrainerFactory]:
    """A factory of per-arm trainers; real training shares one model and executor per run, and
    with a cache answers the client-rounds and evaluations it has seen from it."""
    if scenario.training.mode == "surrogate":
        yield lambda method, recorder: SurrogateTrainer(scenario, method)
        return
    from simulator.executors import make_executor
    from simulator.training import replay
    from simulator.training.real import RealTrainer
    from simulator.training.task import RealTask

    task = RealTask(scenario)
    executor = make_executor(scenario, task)
    evaluate = task.evaluate
    if cache is not None:
        fingerprint = replay.task_fingerprint(scenario, task)
        executor = replay.CachedExecutor(executor, cache, fingerprint)
        evaluate = functools.partial(replay.cached_evaluate, cache, fingerprint, scenario, task)
    try:
        yield lambda method, recorder: RealTrainer(task, executor, method, recorder, evaluate)
    finally:
        executor.close()


class ArmRun:
    """One arm: drives the engine, evaluates every E rounds, records each round."""

    def __init__(
        self,
        world: World,
        method: Method,
        trainer: Trainer,
        recorder: ArmRecorder,
        bar: tqdm,
        cache: ReplayCache | None = None,
    ) -> None:
        self.cache = cache
        self.cache_before = None if cache is None else cache.stats.snapshot()
        self.world = world
        self.scenario = world.scenario
        self.method = method
        self.recorder = recorder
        self.bar = bar
        self.trainer = trainer
        self.engine = Engine(world, method, self.trainer, _status(bar, method.name, cache))
        self.uplink_cum = 0
        self.devices = world.fleet.class_names()

    def _evals(self, round_number: int, time_s: float) -> list[EvalRow]:
        metrics = self.trainer.evaluate(round_number)
        source = self.trainer.source
        return [
            EvalRow(round_number, time_s, self.uplink_cum, name, value, source)
            for name, value in metrics.items()
        ]

    def _state(self, next_round: int, now: float) -> dict[str, Any]:
        return {
            "next_round": next_round,
            "now": now,
            "uplink_cum": self.uplink_cum,
            "trainer": self.trainer.state(),
            "server": self.engine.server_state(),
        }

    def _on_round(self, outcome: RoundOutcome) -> None:
        row = outcome.row()
        self.uplink_cum += row.uplink_bytes
        devices = self.devices
        rows: dict[str, list] = {
            "rounds": [row],
            "clients": [c.row(devices[c.client]) for c in outcome.clients],
        }
        every, last = self.scenario.evaluation.every, self.scenario.server.rounds
        if self.engine.strategy.evaluates(outcome.round, every, last):
            rows["evals"] = self._evals(outcome.round, outcome.end_s)
        self.recorder.append(rows, self._state(outcome.round + 1, outcome.end_s))
        self.bar.update(1)

    def run(self) -> None:
        """Simulate the remaining rounds of this arm and write its summary."""
        checkpoint = self.recorder.checkpoint
        if checkpoint is None:
            self.recorder.append({"evals": self._evals(0, 0.0)}, self._state(1, 0.0))
            first, now = 1, 0.0
        else:
            state = checkpoint["state"]
            self.trainer.restore(state["trainer"])
            self.engine.restore(state["server"])
            self.uplink_cum = state["uplink_cum"]
            first, now = state["next_round"], state["now"]
            self.bar.update(first - 1)
        self.engine.run(first, now, self._on_round)
        self.trainer.finish()
        self.recorder.manifest["host_seconds_math"] = self.trainer.host_seconds()
        if self.cache is not None and self.cache_before is not None:
            self.recorder.manifest["cache"] = {
                "folder": str(self.cache.root),
                **self.cache.stats.since(self.cache_before),
            }
        self.recorder.finish(
            summarise(self.recorder.folder, self.scenario, self.method, self.trainer.mode)
        )


def _status(bar: tqdm, arm: str, cache: ReplayCache | None = None) -> Callable[[str], None]:
    """Show what the engine waits for beside the progress bar, and the cache's hits so far
    (redrawn at most twice a second: a surrogate arm reports thousands of rounds a second)."""
    drawn = [0.0]

    def show(text: str) -> None:
        now = time.monotonic()
        redraw = now - drawn[0] > 0.5
        if cache is not None:
            stats = cache.stats
            text += f" | cache {stats.hits}/{stats.hits + stats.misses} reused"
        bar.set_postfix_str(f"{arm}: {text}", refresh=redraw)
        if redraw:
            drawn[0] = now

    return show


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _first_crossing(evals: list[dict[str, str]], metric: str | None, target: float) -> dict:
    """Where an arm first reached a target on a metric (or `reached: false`)."""
    better = (lambda v: v <= target) if lower_is_better(metric or "") else (lambda v: v >= target)
    hit = next(
        (e for e in evals if e["metric"] == metric and better(float(e["value"]))),
        None,
    )
    return {
        "metric": metric,
        "target": target,
        "reached": hit is not None,
        "round": None if hit is None else int(hit["round"]),
        "time_s": None if hit is None else float(hit["time_s"]),
        "uplink_bytes": None if hit is None else int(hit["uplink_bytes_cum"]),
    }


def summarise(folder: Path, scenario: Scenario, method: Method, mode: str) -> dict[str, Any]:
    """Totals, round-duration statistics, final metrics and time/bytes to each target."""
    rounds = _read_rows(folder / "rounds.csv")
    evals = _read_rows(folder / "evals.csv")
    durations = [float(r["duration_s"]) for r in rounds]
    final: dict[str, float] = {}
    for e in evals:
        final[e["metric"]] = float(e["value"])
    metric = scenario.evaluation.metric or next(iter(final), None)
    targets = [_first_crossing(evals, metric, target) for target in scenario.evaluation.targets]
    return {
        "arm": method.name,
        "mode": mode,
        "seed": scenario.seed,
        "scenario": scenario.name,
        "strategy": scenario.server.strategy,
        "rounds": len(rounds),
        "sim_time_s": float(rounds[-1]["end_s"]) if rounds else 0.0,
        "uplink_bytes": sum(int(r["uplink_bytes"]) for r in rounds),
        "downlink_bytes": sum(int(r["downlink_bytes"]) for r in rounds),
        "round_duration_s": {
            "mean": statistics.fmean(durations) if durations else math.nan,
            "median": statistics.median(durations) if durations else math.nan,
            "max": max(durations, default=math.nan),
        },
        "energy_j_mean_per_round": statistics.fmean(float(r["energy_j_mean"]) for r in rounds)
        if rounds
        else math.nan,
        "final": final,
        "targets": targets,
        "complete": True,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(scenario: Scenario, method: Method, mode: str) -> dict[str, Any]:
    return {
        "arm": method.name,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "mode": mode,
        "torch_threads": getattr(scenario.training, "threads", None),
        "dtype": _dtype(scenario) if mode == "real" else None,
        "traces": [
            {"path": str(p), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in trace_files(scenario.network)
        ],
    }


def _dtype(scenario: Scenario) -> str:
    """The compute dtype training.dtype resolves to on this host (`auto` depends on it)."""
    from simulator.training.models import dtype_name

    return dtype_name(scenario.training)  # type: ignore[arg-type]


def _is_arm_folder(path: Path) -> bool:
    return (path / "manifest.json").is_file()


def _holds_results(out: Path) -> bool:
    """Whether any arm of a run directory has started (a checkpoint or a summary)."""
    started = ("checkpoint.json", "summary.json")
    return any((arm / name).exists() for arm in out.iterdir() for name in started)


def check_out(out: Path, force: bool) -> None:
    """Refuse an --out that cannot become this run's directory, before anything runs.

    A folder that only a failed start left behind (scenario files, no arm results) is reused;
    one with results needs --force; one that is not a run directory is never overwritten.
    """
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is a file, not a folder; choose a folder path")
    if _is_arm_folder(out):
        raise RunDirError(
            f"--out {out}: is an arm folder of the run {out.parent}; choose another --out"
        )
    if out.is_dir() and any(out.iterdir()):
        if not (out / "scenario.json").is_file():
            raise RunDirError(
                f"--out {out}: a non-empty folder that is not a fstq-sim run directory; "
                "choose a new or empty folder (nothing there is touched)"
            )
        if _holds_results(out) and not force:
            raise RunDirError(
                f"{out}: already holds results; continue it with --resume {out}, "
                "choose another --out, or pass --force to replace them"
            )
    ancestor = next(p for p in (out, *out.parents) if p.exists())
    if not ancestor.is_dir():
        raise RunDirError(f"--out {out}: {ancestor} is a file, so no folder can be made there")
    try:
        tempfile.TemporaryFile(dir=ancestor).close()
    except OSError as exc:
        raise RunDirError(
            f"--out {out}: cannot write in {ancestor} ({exc.strerror}); choose a folder you "
            "can write to"
        ) from None


def prepare_out(
    out: Path, scenario_file: Path | None, scenario: Scenario, arms: list[str] | None = None
) -> None:
    """Write a run directory's scenario (resolved, and the file as given) and arm selection;
    refuses a folder that already holds results (`replacing` sets them aside first)."""
    check_out(out, force=False)
    write_run_files(out, resolved_dict(scenario), arms, scenario_file)


def load_resumable(out: Path) -> tuple[Scenario, list[str] | None]:
    """The resolved scenario saved in a run directory and the arms the run was started with
    (None: all)."""
    if _is_arm_folder(out):
        raise RunDirError(
            f"--resume {out}: is an arm folder; resume its run directory: "
            f"fstq-sim run --resume {out.parent} --arms {out.name}"
        )
    raw = read_json(out / "scenario.json")
    scenario = scenario_from_dict(raw, str(out / "scenario.json"), base=out)
    saved = out / RUN_FILE
    return scenario, (read_json(saved).get("arms") if saved.exists() else None)


def run_scenario(
    scenario: Scenario,
    out: Path,
    resume: bool = False,
    arms: list[str] | None = None,
    progress: bool = True,
    source: str = "scenario",
    world: World | None = None,
    on_start: Callable[[], None] = lambda: None,
    cache: ReplayCache | None = None,
) -> list[Path]:
    """Run (or finish) every selected arm; returns the arm folders. on_start is called once
    the world and the trainers are built, before the first arm runs. With a cache, real
    client-rounds and evaluations seen before are read from it (the same bytes)."""
    methods = [m for m in scenario.methods if arms is None or m.name in arms]
    world = world or build_world(scenario, source)
    folders = []
    total = len(methods) * scenario.server.rounds
    with (
        trainers(scenario, cache) as make_trainer,
        tqdm(total=total, disable=not progress, unit="round", desc=scenario.name) as bar,
    ):
        on_start()
        for method in methods:
            folder = out / method.name
            folders.append(folder)
            if resume and (folder / "summary.json").exists():
                bar.update(scenario.server.rounds)
                continue
            bar.set_postfix_str(method.name)
            manifest = _manifest(scenario, method, scenario.training.mode)
            recorder = ArmRecorder(folder, manifest, resume, resolved_dict(scenario))
            trainer = make_trainer(method, recorder)
            try:
                ArmRun(world, method, trainer, recorder, bar, cache).run()
            finally:
                recorder.close()
    return folders
