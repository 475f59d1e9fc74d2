"""Sweeps: every arm of a scenario over several seeds, one run directory per seed
(`OUT/seed-<s>/<arm>/`), resumable and optionally in parallel processes.

Seeds are the scenario's seed and the N − 1 after it, so `seed-<s>` of a sweep holds exactly what
`fstq-sim run --seed s` writes. Rerunning the same sweep skips finished arms and resumes
interrupted ones through the run directory's checkpoints; each seed's streams are its own, so
results do not depend on `jobs`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from simulator.errors import RunDirError
from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import load_scenario, resolved_dict

log = logging.getLogger(__name__)


def seed_dir(out: Path, seed: int) -> Path:
    """Where one seed of a sweep lives."""
    return out / f"seed-{seed}"


def run_seed(scenario_file: str, overrides: list[str], seed: int, out: str) -> Path:
    """Run (or finish) every arm of one seed; a top-level function so worker processes can
    take it. Refuses a seed folder that holds a different scenario."""
    scenario = load_scenario(scenario_file, [*overrides, f"seed={seed}"])
    folder = seed_dir(Path(out), seed)
    saved = folder / "scenario.json"
    if saved.exists():
        if json.loads(saved.read_text(encoding="utf-8")) != resolved_dict(scenario):
            raise RunDirError(
                f"{saved}: holds a different scenario than this sweep's; choose another --out "
                "or delete the folder"
            )
    else:
        prepare_out(folder, Path(scenario_file), scenario, force=True)
    run_scenario(scenario, folder, resume=True, progress=False, source=scenario_file)
    return folder


def sweep(
    scenario_file: str, seeds: int, out: Path, overrides: list[str], jobs: int = 1
) -> list[Path]:
    """Run every arm × seed; a progress bar (with ETA) counts finished seeds."""
    first = load_scenario(scenario_file, overrides).seed
    wanted = list(range(first, first + seeds))
    out.mkdir(parents=True, exist_ok=True)
    done = []
    with tqdm(total=len(wanted), unit="seed", desc=f"sweep {out.name}") as bar:
        if jobs <= 1:
            for seed in wanted:
                bar.set_postfix_str(f"seed {seed}")
                done.append(run_seed(scenario_file, overrides, seed, str(out)))
                bar.update()
        else:
            # spawn, not fork: a forked copy of a process running torch threads can deadlock
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
                futures = [
                    pool.submit(run_seed, scenario_file, overrides, seed, str(out))
                    for seed in wanted
                ]
                for future in as_completed(futures):
                    done.append(future.result())
                    bar.update()
    log.info("sweep of %d seeds finished in %s", len(wanted), out)
    return sorted(done)
