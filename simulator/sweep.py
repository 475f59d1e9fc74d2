"""Sweeps: every arm of a scenario over several seeds, one run directory per seed
(`OUT/seed-<s>/<arm>/`), resumable and optionally in parallel processes.

Seeds are the scenario's seed and the N − 1 after it, so `seed-<s>` of a sweep holds exactly what
`fstq-sim run --seed s` writes. Rerunning the same sweep skips finished arms and resumes
interrupted ones through the run directory's checkpoints; each seed's streams are its own, so
results do not depend on `jobs`.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from simulator.cache import ReplayCache
from simulator.errors import RunDirError
from simulator.experiment import by_content, normalised, prepare_out, run_scenario
from simulator.recorder import is_empty, is_run_dir, read_json, run_lock
from simulator.scenario import Scenario, load_scenario, resolved_dict

log = logging.getLogger(__name__)


def seed_dir(out: Path, seed: int) -> Path:
    """Where one seed of a sweep lives."""
    return out / f"seed-{seed}"


def check_out(out: Path, seeds: range) -> None:
    """Refuse, before any seed starts, an --out where the seed folders cannot be made: a file
    at it, among its parents or at a seed folder's place (a traceback from the first seed)."""
    for path in (*(seed_dir(out, s) for s in seeds), out, *out.parents):
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {out}: {path} is a file, not a folder; choose another --out")


def run_seed(
    scenario_file: str, overrides: list[str], seed: int, out: str, cache: str | None = None
) -> Path:
    """Run (or finish) every arm of one seed, with the replay cache in folder `cache` (None:
    none); a top-level function so worker processes can take it. Refuses a seed folder that
    holds a different scenario."""
    scenario = load_scenario(scenario_file, [*overrides, f"seed={seed}"])
    folder = seed_dir(Path(out), seed)
    if folder.is_dir() and not is_empty(folder) and not is_run_dir(folder):
        raise RunDirError(
            f"{folder}: a non-empty folder that is not a fstq-sim run directory; choose "
            "another --out (nothing there is touched)"
        )
    replay = None if cache is None else ReplayCache(Path(cache))
    with run_lock(folder):
        saved = folder / "scenario.json"
        if saved.exists():
            if not _same_scenario(read_json(saved), scenario):
                raise RunDirError(
                    f"{saved}: holds a different scenario than this sweep's; choose another "
                    "--out or delete the folder"
                )
        else:
            prepare_out(folder, Path(scenario_file), scenario)
        run_scenario(
            scenario, folder, resume=True, progress=False, source=scenario_file, cache=replay
        )
    return folder


def _same_scenario(saved: dict, scenario: Scenario) -> bool:
    """Whether a saved resolved scenario is this one, read through today's schema (so a
    default added since the folder was written is no difference), files compared by content."""
    return by_content(normalised(saved)) == by_content(resolved_dict(scenario))


@dataclass(frozen=True)
class SeedTask:
    """One seed of one scenario (with its overrides) into one sweep directory."""

    scenario_file: str
    overrides: tuple[str, ...]
    seed: int
    out: str
    cache: str | None = None  # the replay cache's folder; None: none

    def run(self) -> Path:
        return run_seed(self.scenario_file, list(self.overrides), self.seed, self.out, self.cache)


def sweep(
    scenario_file: str,
    seeds: int,
    out: Path,
    overrides: list[str],
    jobs: int = 1,
    cache: str | None = None,
) -> list[Path]:
    """Run every arm × seed (real client-rounds and evaluations through the replay cache in
    folder `cache`, when given); a progress bar (with ETA) counts finished seeds."""
    first = load_scenario(scenario_file, overrides).seed
    check_out(out, range(first, first + seeds))
    tasks = [
        SeedTask(scenario_file, tuple(overrides), seed, str(out), cache)
        for seed in range(first, first + seeds)
    ]
    return run_tasks(tasks, jobs, f"sweep {out.name}")


def run_tasks(tasks: list[SeedTask], jobs: int = 1, desc: str = "sweep") -> list[Path]:
    """Run seed tasks (of one or several scenarios), in `jobs` spawned processes when > 1."""
    done = []
    with tqdm(total=len(tasks), unit="seed", desc=desc) as bar:
        if jobs <= 1:
            for task in tasks:
                bar.set_postfix_str(f"{Path(task.out).name} seed {task.seed}")
                done.append(task.run())
                bar.update()
        else:
            # spawn, not fork: a forked copy of a process running torch threads can deadlock.
            # Each seed does its math with its scenario's training.threads (part of the run);
            # give jobs × threads <= cores to avoid oversubscribing the CPU.
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(jobs, spawn) as pool:
                for future in as_completed([pool.submit(task.run) for task in tasks]):
                    done.append(future.result())
                    bar.update()
    log.info("%d seed tasks finished", len(tasks))
    return sorted(done)
