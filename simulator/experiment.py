"""Run every method arm of a scenario into a run directory (fresh or resumed).

Each arm gets a fresh SimPy environment over the same World, so all arms see the same clients,
links, selections and dropouts. The summary of an arm is computed from its CSV files, so a
resumed run summarises exactly what an uninterrupted one would.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from simulator.cache import ReplayCache
from simulator.engine import Engine
from simulator.errors import RunDirError
from simulator.network.link import trace_files
from simulator.recorder import (
    MARKER,
    RUN_FILE,
    ArmRecorder,
    EvalRow,
    foreign_entries,
    holds_results,
    is_arm_folder,
    is_empty,
    is_run_dir,
    lower_is_better,
    read_json,
    recover_replaced,
    run_lock,
    write_run_files,
)
from simulator.rounds import RoundOutcome
from simulator.scenario import Method, Scenario, resolved_dict, scenario_from_dict
from simulator.tensorboard_events import ArmBoard
from simulator.training.base import Trainer
from simulator.training.surrogate import SurrogateTrainer
from simulator.world import World, build_world

log = logging.getLogger(__name__)

TrainerFactory = Callable[[Method, ArmRecorder], Trainer]
# rounds done show with one decimal: they advance in fractions as client-rounds finish
BAR_FORMAT = "{l_bar}{bar}| {n:.1f}/{total_fmt} rounds [{elapsed}<{remaining}{postfix}]"


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
        board: ArmBoard | None = None,
    ) -> None:
        self.cache = cache
        self.cache_before = None if cache is None else cache.stats.snapshot()
        self.world = world
        self.scenario = world.scenario
        self.method = method
        self.recorder = recorder
        self.board = board
        self.progress = ArmProgress(bar, method.name, self.scenario, cache)
        self.trainer = trainer
        counted = _Counted(trainer, self.progress.client_done)
        self.engine = Engine(world, method, counted, self.progress.show)
        self.uplink_cum = 0
        self.devices = world.fleet.class_names()

    def _evals(self, round_number: int, time_s: float) -> list[EvalRow]:
        views = {"": self.trainer.evaluate(round_number), **self.trainer.views()}
        source = self.trainer.source
        return [
            EvalRow(round_number, time_s, self.uplink_cum, name, value, source, group)
            for group, metrics in views.items()
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
        self._record(rows, self._state(outcome.round + 1, outcome.end_s))
        self.progress.round_done(rows)

    def _record(self, rows: dict[str, list], state: dict[str, Any]) -> None:
        self.recorder.append(rows, state)
        if self.board is not None:
            self.board.write(rows)

    def run(self) -> None:
        """Simulate the remaining rounds of this arm and write its summary."""
        checkpoint = self.recorder.checkpoint
        if checkpoint is None:
            rows = {"evals": self._evals(0, 0.0)}
            self._record(rows, self._state(1, 0.0))
            self.progress.show_quality(rows)
            first, now = 1, 0.0
        else:
            state = checkpoint["state"]
            self.trainer.restore(state["trainer"])
            self.engine.restore(state["server"])
            self.uplink_cum = state["uplink_cum"]
            first, now = state["next_round"], state["now"]
            self.progress.bar.update(first - 1)
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


class _Counted:
    """The arm's trainer, telling the progress bar each time a client-round's training ends."""

    def __init__(self, trainer: Trainer, done: Callable[[], None]) -> None:
        self._trainer, self._done = trainer, done

    def train(self, client: int, round_index: int) -> Any:
        result = self._trainer.train(client, round_index)
        self._done()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)


class ArmProgress:
    """The run's bar as one arm drives it. Rounds advance in fractions as client-rounds finish,
    so the ETA appears after the first one (not after a first LLM round of minutes); beside it
    the latest quality, what the engine waits for and the cache's reuse (redrawn at most twice
    a second: a surrogate arm reports thousands of rounds a second)."""

    def __init__(
        self, bar: tqdm, arm: str, scenario: Scenario, cache: ReplayCache | None = None
    ) -> None:
        self.bar, self.arm, self.cache = bar, arm, cache
        self.step = 1.0 / scenario.population.per_round
        self.metric = scenario.evaluation.metric
        self.clients = 0  # client-rounds finished in the current round
        self.quality = ""
        self.text = ""
        self.drawn = 0.0

    def client_done(self) -> None:
        """One more client-round trained: a fraction of a round, never a whole one."""
        self.clients += 1
        whole = math.floor(self.bar.n + 1e-6)
        self.bar.update(whole + min(self.clients * self.step, 0.99) - self.bar.n)

    def round_done(self, rows: dict[str, list]) -> None:
        """The round is recorded: count it whole and show its evaluation, if any."""
        self.clients = 0
        self.bar.update(math.floor(self.bar.n + 1e-6) + 1 - self.bar.n)
        self.show_quality(rows)

    def show_quality(self, rows: dict[str, list]) -> None:
        """Keep the latest evaluation (of the scenario's metric, else the first) for the bar."""
        evals = rows.get("evals") or []
        shown = next((e for e in evals if e.metric == self.metric), evals[0] if evals else None)
        if shown is not None:
            self.quality = f"{shown.metric} {shown.value:.4g} @ r{shown.round}"
            self.show(self.text)

    def show(self, text: str) -> None:
        """What the engine waits for (its status line), after the arm and its quality."""
        self.text = text
        now = time.monotonic()
        redraw = now - self.drawn > 0.5
        parts = [self.arm, self.quality, text]
        if self.cache is not None:
            stats = self.cache.stats
            parts.append(f"cache {stats.hits}/{stats.hits + stats.misses} reused")
        self.bar.set_postfix_str(" | ".join(p for p in parts if p), refresh=redraw)
        if redraw:
            self.drawn = now


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
    evals = [e for e in _read_rows(folder / "evals.csv") if not e["group"]]  # overall rows
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
        "scenario_sha256": digest(resolved_dict(scenario)),
        "arm_sha256": digest(method.model_dump(mode="json")),
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


def check_out(out: Path, force: bool) -> None:
    """Refuse an --out that cannot become this run's directory, before anything runs.

    A run directory that only a failed start left behind (no arm results) is reused; one with
    results needs --force, which replaces it only if it holds nothing fstq-sim did not write; a
    folder that is not a run directory (no marker) is never written to.
    """
    recover_replaced(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is a file, not a folder; choose a folder path")
    if is_arm_folder(out):
        raise RunDirError(
            f"--out {out}: is an arm folder of the run {out.parent}; choose another --out"
        )
    if out.is_dir() and not is_empty(out):
        if not is_run_dir(out):
            raise RunDirError(
                f"--out {out}: a non-empty folder that is not a fstq-sim run directory (no "
                f"{MARKER}); choose a new or empty folder (nothing there is touched)"
            )
        if holds_results(out) and not force:
            raise RunDirError(
                f"{out}: already holds results; continue it with --resume {out}, "
                "choose another --out, or pass --force to replace them"
            )
        foreign = foreign_entries(out)
        if foreign and force:
            names = ", ".join(str(p.relative_to(out)) for p in foreign[:5])
            raise RunDirError(
                f"--force {out}: holds files fstq-sim did not write ({names}"
                f"{', ...' if len(foreign) > 5 else ''}); --force deletes only a run's own "
                "files: move those out first"
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
    """Write a run directory's marker, scenario (resolved, and the file as given) and arm
    selection, under its lock; refuses a folder that already holds results (`replacing` sets
    them aside first)."""
    check_out(out, force=False)
    with run_lock(out):
        write_run_files(out, resolved_dict(scenario), arms, scenario_file)


def load_resumable(out: Path) -> tuple[Scenario, list[str] | None]:
    """The resolved scenario saved in a run directory and the arms the run was started with
    (None: all)."""
    if is_arm_folder(out):
        raise RunDirError(
            f"--resume {out}: is an arm folder; resume its run directory: "
            f"fstq-sim run --resume {out.parent} --arms {out.name}"
        )
    recover_replaced(out)
    if out.is_dir() and not is_run_dir(out):
        raise RunDirError(
            f"--resume {out}: not a fstq-sim run directory (no {MARKER}); give the folder "
            "a run wrote"
        )
    raw = read_json(out / "scenario.json")
    scenario = scenario_from_dict(raw, str(out / "scenario.json"), base=out)
    saved = out / RUN_FILE
    return scenario, (read_json(saved).get("arms") if saved.exists() else None)


def digest(data: Any) -> str:
    """sha256 of a JSON value, independent of key order."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalised(resolved: dict[str, Any]) -> dict[str, Any]:
    """A saved resolved scenario read through today's schema, so a default added since it was
    written is no difference (as saved when today's schema refuses it)."""
    try:
        return resolved_dict(Scenario.model_validate(resolved))
    except ValidationError:
        return resolved


def by_content(value: Any) -> Any:
    """A resolved scenario with each existing file named by its bytes' sha256 and trace_dir left
    out (its files are listed one by one), so a run or sweep resumes over byte-identical traces and
    data that moved (e.g. the shipped copies in traces/ of files once read from elsewhere)."""
    if isinstance(value, dict):
        return {k: by_content(v) for k, v in value.items() if k != "trace_dir"}
    if isinstance(value, list):
        return [by_content(v) for v in value]
    if isinstance(value, str) and Path(value).is_absolute() and Path(value).is_file():
        return hashlib.sha256(Path(value).read_bytes()).hexdigest()
    return value


def differences(before: Any, after: Any, key: str = "") -> list[str]:
    """The dotted keys where two JSON values differ, each with both values."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            line
            for name in sorted(set(before) | set(after), key=str)
            for line in differences(
                before.get(name, "<absent>"), after.get(name, "<absent>"), f"{key}.{name}"
            )
        ]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            line
            for i, (b, a) in enumerate(zip(before, after, strict=True))
            for line in differences(b, a, f"{key}[{i}]")
        ]
    if before == after:
        return []
    return [f"{key.lstrip('.')} ({json.dumps(before)} then, {json.dumps(after)} now)"]


def verify_arms(out: Path, scenario: Scenario, names: list[str] | None = None) -> None:
    """Check that every started arm of a run directory (of `names`; None: all) continues the
    scenario it started with: its own record of the scenario, the hashes in its manifest, and
    no more rounds done than the scenario asks for. A mismatch names the keys that differ."""
    resolved = resolved_dict(scenario)
    methods = {m["name"]: m for m in resolved["methods"]}
    for folder in sorted(p for p in out.iterdir() if is_arm_folder(p)):
        if names is not None and folder.name not in names:
            continue
        manifest = read_json(folder / "manifest.json")
        recorded = read_json(folder / "scenario.json")
        fix = f"run it into a new --out, or delete {folder} to rerun that arm"
        if "scenario_sha256" in manifest and digest(recorded) != manifest["scenario_sha256"]:
            raise RunDirError(
                f"{folder / 'scenario.json'}: changed since the arm started (its sha256 is not "
                f"the one in manifest.json); {fix}"
            )
        changed = differences(by_content(normalised(recorded)), by_content(resolved))
        if changed:
            raise RunDirError(
                f"{folder}: started with another scenario than {out / 'scenario.json'}; "
                f"differs at {'; '.join(changed[:8])}; {fix}"
            )
        method = methods.get(folder.name)
        arm_hash = manifest.get("arm_sha256")
        if (
            method is None
            or manifest.get("arm", folder.name) != folder.name
            or (arm_hash is not None and arm_hash != digest(method))
        ):
            raise RunDirError(
                f"{folder}: holds arm {manifest.get('arm')!r}, which is not the arm "
                f"{folder.name!r} of {out / 'scenario.json'}; {fix}"
            )
        checkpoint = folder / "checkpoint.json"
        done = read_json(checkpoint)["state"]["next_round"] - 1 if checkpoint.exists() else 0
        if done > scenario.server.rounds:
            raise RunDirError(
                f"{folder}: has done {done} rounds, more than server.rounds = "
                f"{scenario.server.rounds} of {out / 'scenario.json'}; {fix}"
            )


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
    tensorboard: Path | None = None,
) -> list[Path]:
    """Run (or finish) every selected arm under the run directory's lock; returns the arm
    folders. A resumed run first checks that each started arm continues this scenario. on_start
    is called once the world and the trainers are built, before the first arm runs. With a
    cache, real client-rounds and evaluations seen before are read from it (the same bytes).
    With a tensorboard folder, each arm's rows also go to event files in tensorboard/<arm>."""
    with run_lock(out):
        if resume:
            verify_arms(out, scenario, arms)
        return _run_arms(
            scenario, out, resume, arms, progress, source, world, on_start, cache, tensorboard
        )


def _run_arms(
    scenario: Scenario,
    out: Path,
    resume: bool,
    arms: list[str] | None,
    progress: bool,
    source: str,
    world: World | None,
    on_start: Callable[[], None],
    cache: ReplayCache | None,
    tensorboard: Path | None,
) -> list[Path]:
    methods = [m for m in scenario.methods if arms is None or m.name in arms]
    world = world or build_world(scenario, source)
    folders = []
    total = len(methods) * scenario.server.rounds
    with (
        trainers(scenario, cache) as make_trainer,
        tqdm(
            total=total,
            disable=not progress,
            unit="round",
            desc=scenario.name,
            bar_format=BAR_FORMAT,
        ) as bar,
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
            board = None if tensorboard is None else ArmBoard(tensorboard / method.name)
            try:
                ArmRun(world, method, trainer, recorder, bar, cache, board).run()
            finally:
                recorder.close()
                if board is not None:
                    board.close()
    return folders
