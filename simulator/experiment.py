"""Run every method arm of a scenario into a run directory (fresh or resumed).

Each arm gets a fresh SimPy environment over the same World, so all arms see the same clients,
links, selections and dropouts. The summary of an arm is computed from its CSV files, so a
resumed run summarises exactly what an uninterrupted one would.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import shutil
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from simulator.engine import Engine, RoundOutcome, World, build_world
from simulator.errors import RunDirError
from simulator.network.link import trace_files
from simulator.recorder import ROUND_COLUMNS, ArmRecorder, read_json, write_json_atomic
from simulator.scenario import Method, Scenario, resolved_dict, scenario_from_dict
from simulator.training.base import Trainer
from simulator.training.surrogate import SurrogateTrainer

log = logging.getLogger(__name__)

LOWER_IS_BETTER = ("loss", "nll", "perplexity")


def lower_is_better(metric: str) -> bool:
    """Direction of a metric, by name (losses and perplexities fall, the rest rise)."""
    return metric.endswith(LOWER_IS_BETTER)


TrainerFactory = Callable[[Method, Path], Trainer]


@contextmanager
def trainers(scenario: Scenario) -> Iterator[TrainerFactory]:
    """A factory of per-arm trainers; real training shares one model and executor per run."""
    if scenario.training.mode == "surrogate":
        yield lambda method, folder: SurrogateTrainer(scenario, method)
        return
    from simulator.executors import make_executor
    from simulator.training.real import RealTask, RealTrainer

    task = RealTask(scenario)
    executor = make_executor(scenario, task)
    try:
        yield lambda method, folder: RealTrainer(task, executor, method, folder)
    finally:
        executor.close()


class ArmRun:
    """One arm: drives the engine, evaluates every E rounds, records each round."""

    def __init__(
        self, world: World, method: Method, trainer: Trainer, recorder: ArmRecorder, bar: tqdm
    ) -> None:
        self.world = world
        self.scenario = world.scenario
        self.method = method
        self.recorder = recorder
        self.bar = bar
        self.trainer = trainer
        self.engine = Engine(world, method, self.trainer)
        self.uplink_cum = 0
        self.devices = world.fleet.class_names()

    def _evals(self, round_number: int, time_s: float) -> list[tuple[Any, ...]]:
        metrics = self.trainer.evaluate(round_number)
        return [
            (round_number, time_s, self.uplink_cum, name, value, self.trainer.source)
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
        self.uplink_cum += row[ROUND_COLUMNS.index("uplink_bytes")]
        devices = self.devices
        rows: dict[str, list] = {
            "rounds": [row],
            "clients": [c.row(devices[c.client]) for c in outcome.clients],
        }
        every, last = self.scenario.evaluation.every, self.scenario.server.rounds
        if outcome.round % every == 0 or outcome.round == last:
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
        self.trainer.finish(self.recorder.folder)
        self.recorder.manifest["host_seconds_math"] = self.trainer.host_seconds()
        self.recorder.finish(
            summarise(self.recorder.folder, self.scenario, self.method, self.trainer.mode)
        )


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
        "traces": [
            {"path": str(p), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in trace_files(scenario.network)
        ],
    }


def prepare_out(out: Path, scenario_file: Path | None, scenario: Scenario, force: bool) -> None:
    """Create a fresh run directory; refuse to overwrite results unless forced."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunDirError(
                f"{out}: already holds results; continue it with --resume {out}, "
                "choose another --out, or pass --force to overwrite"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "scenario.json", resolved_dict(scenario))
    if scenario_file is not None:
        shutil.copyfile(scenario_file, out / "scenario.toml")


def load_resumable(out: Path) -> Scenario:
    """The resolved scenario saved in a run directory."""
    raw = read_json(out / "scenario.json")
    return scenario_from_dict(raw, str(out / "scenario.json"), base=out)


def run_scenario(
    scenario: Scenario,
    out: Path,
    resume: bool = False,
    arms: list[str] | None = None,
    progress: bool = True,
    source: str = "scenario",
) -> list[Path]:
    """Run (or finish) every selected arm; returns the arm folders."""
    methods = [m for m in scenario.methods if arms is None or m.name in arms]
    world = build_world(scenario, source)
    folders = []
    total = len(methods) * scenario.server.rounds
    with (
        trainers(scenario) as make_trainer,
        tqdm(total=total, disable=not progress, unit="round", desc=scenario.name) as bar,
    ):
        for method in methods:
            folder = out / method.name
            folders.append(folder)
            if resume and (folder / "summary.json").exists():
                bar.update(scenario.server.rounds)
                continue
            bar.set_postfix_str(method.name)
            trainer = make_trainer(method, folder)
            recorder = ArmRecorder(folder, _manifest(scenario, method, trainer.mode), resume)
            write_json_atomic(folder / "scenario.json", resolved_dict(scenario))
            try:
                ArmRun(world, method, trainer, recorder, bar).run()
            finally:
                recorder.close()
    return folders
