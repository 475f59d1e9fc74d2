"""What a real client-round and an evaluation depend on, as cache keys, and the executor and
evaluation wrappers that consult the cache (simulator/cache.py) before computing.

The run's part of every key (`task_fingerprint`) covers the resolved training section (model
name or path, LoRA, data, partition, local settings, threads, dtype), the seed and the
population size (the partition depends on both), the loaded model's every parameter and buffer
(base weights and the seeded LoRA initialisation), the tokenised data and the partition, the
versions of the packages that shape results (recorder.package_versions), the source of the
modules that run a client-round (training/, methods/, seeds.py) and the source of every component
the scenario names by `package.module:Class` (codec, token policy, strategy, ...: their whole
top-level package): an edited codec, built-in or the user's own, never replays stale entries.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from simulator.cache import ReplayCache, array_hash, arrays_bytes, canonical_hash
from simulator.recorder import package_versions
from simulator.training.client import Arm, Job, Update
from simulator.training.evaluate import Evaluated
from simulator.training.local import HostTime, LocalStats
from simulator.training.models import dtype_name

if TYPE_CHECKING:
    from simulator.executors import Executor
    from simulator.scenario import Scenario
    from simulator.training.task import RealTask

_PACKAGE = Path(__file__).resolve().parent.parent
_SOURCES = ("training", "methods", "seeds.py")  # the code a client-round or evaluation runs
_COMPONENT = re.compile(r"([A-Za-z_]\w*)(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")  # package.module:Class


def _hash_files(paths: list[Path]) -> str:
    """sha256 of the names (from each path's parent) and bytes of files and of the .py files
    under folders, in a stable order."""
    digest = hashlib.sha256()
    for entry in paths:
        for file in sorted(entry.rglob("*.py")) if entry.is_dir() else [entry]:
            digest.update(str(file.relative_to(entry.parent)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


@functools.cache
def _source_hash() -> str:
    """The code this process runs: hashed once, at first use (a module edited on disk later is
    not what this process executes)."""
    return _hash_files([_PACKAGE / entry for entry in _SOURCES])


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _package_hash(package: str) -> str | None:
    """The source of a top-level package (every .py under it) or module, as it is on disk when
    the run starts; None for a name that is not an importable package (then not a component:
    the scenario's names were resolved when it loaded)."""
    try:
        spec = importlib.util.find_spec(package)
    except ValueError:  # a module without a spec, e.g. __main__
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return _hash_files([Path(folder) for folder in spec.submodule_search_locations])
    if spec.origin is None or not Path(spec.origin).is_file():
        return None  # built into the interpreter: covered by the package versions
    return _hash_files([Path(spec.origin)])


def _component_sources(scenario: Scenario) -> dict[str, str | None]:
    """The source of every package the scenario names a component from, other than this one
    (whose code is _source_hash and the package versions)."""
    packages = {
        match.group(1)
        for text in _strings(scenario.model_dump(mode="json"))
        if (match := _COMPONENT.fullmatch(text))
    }
    packages.discard(_PACKAGE.name)
    return {package: _package_hash(package) for package in sorted(packages)}


def _tensor_hash(digest: Any, tensor: torch.Tensor) -> None:
    array = tensor.detach().cpu().contiguous()
    digest.update(f"{array.dtype}{tuple(array.shape)}".encode())
    digest.update(array.view(torch.uint8).numpy().tobytes() if array.numel() else b"")


def task_fingerprint(scenario: Scenario, task: RealTask) -> str:
    """The run's share of every key: everything of the task a client-round's result depends on."""
    digest = hashlib.sha256()
    spec = {
        "training": scenario.training.model_dump(mode="json"),
        "seed": scenario.seed,
        "clients": scenario.population.clients,
        "dtype": dtype_name(scenario.training),  # `auto` resolved on this host
        "versions": package_versions(),
        "source": _source_hash(),
        "components": _component_sources(scenario),
    }
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for name, tensor in sorted(task.model.model.state_dict().items()):
        digest.update(name.encode())
        _tensor_hash(digest, tensor)
    tokens = task.tokens
    for tensor in (tokens.input_ids, tokens.attention_mask, tokens.labels, tokens.targets):
        if tensor is not None:
            _tensor_hash(digest, tensor)
    digest.update(task.data.fingerprint().encode())
    for part in task.parts:
        digest.update(array_hash(part).encode())
    return digest.hexdigest()


def _arm_spec(arm: Arm) -> dict[str, Any]:
    """The arm's method as it affects training (not its name: equal methods share entries)."""
    spec = asdict(arm)
    del spec["name"]
    return spec


def update_key(fingerprint: str, arm: Arm, job: Job) -> str:
    """The key of one client-round."""
    return canonical_hash(
        {
            "kind": "update",
            "task": fingerprint,
            "arm": _arm_spec(arm),
            "client": job.client,
            "round": job.round,
            "global": array_hash(job.global_flat),
            "state": {name: array_hash(value) for name, value in sorted(job.state.items())},
            "budget": job.budget_bytes,
            "shared": {name: array_hash(value) for name, value in sorted(job.shared.items())},
        }
    )


def eval_key(
    fingerprint: str, scenario: Scenario, arm: Arm, flat: np.ndarray, answers: bool, clients: bool
) -> str:
    """The key of one evaluation of a global state."""
    return canonical_hash(
        {
            "kind": "eval",
            "task": fingerprint,
            "evaluation": scenario.evaluation.model_dump(mode="json"),
            "freeze_a": arm.freeze_a,
            "global": array_hash(flat),
            "answers": answers,
            "clients": clients,
        }
    )


_STATS = tuple(f.name for f in fields(LocalStats) if f.name not in ("host", "fisher"))


def _update_entry(update: Update) -> tuple[dict[str, Any], dict[str, bytes]]:
    stats = {name: getattr(update.stats, name) for name in _STATS}
    meta = {"num_samples": update.num_samples, "stats": stats}
    return meta, {"msg": update.message, "npz": arrays_bytes(update.state)}


def _update_from(job: Job, meta: dict[str, Any], payloads: dict[str, bytes]) -> Update:
    with np.load(io.BytesIO(payloads["npz"]), allow_pickle=False) as loaded:
        state = {name: loaded[name] for name in loaded.files}
    stats = LocalStats(**meta["stats"], host=HostTime())  # no host time spent on a hit
    return Update(job.client, payloads["msg"], meta["num_samples"], stats, state)


class CachedExecutor:
    """An executor that answers the client-rounds it has seen from the cache and hands the
    rest to the executor it wraps (in one batch, so a pool still trains them in parallel)."""

    def __init__(self, inner: Executor, cache: ReplayCache, fingerprint: str) -> None:
        self.inner = inner
        self.cache = cache
        self.fingerprint = fingerprint

    def run(self, arm: Arm, jobs: list[Job]) -> list[Update]:
        """Every job's update, in job order: cached where found, trained otherwise."""
        keys = [update_key(self.fingerprint, arm, job) for job in jobs]
        found: list[Update | None] = []
        for job, key in zip(jobs, keys, strict=True):
            entry = self.cache.get("update", key)
            found.append(None if entry is None else _update_from(job, *entry))
        missing = [i for i, update in enumerate(found) if update is None]
        trained = self.inner.run(arm, [jobs[i] for i in missing]) if missing else []
        for i, update in zip(missing, trained, strict=True):
            meta, payloads = _update_entry(update)
            self.cache.put("update", keys[i], meta, payloads, update.stats.host.total())
            found[i] = update
        return found  # type: ignore[return-value]

    def close(self) -> None:
        """Release the wrapped executor's workers."""
        self.inner.close()


def cached_evaluate(
    cache: ReplayCache,
    fingerprint: str,
    scenario: Scenario,
    task: RealTask,
    arm: Arm,
    flat: np.ndarray,
    answers: bool,
    clients: bool = False,
) -> Evaluated:
    """task.evaluate, answered from the cache when this state was evaluated before (no host
    seconds spent on a hit)."""
    key = eval_key(fingerprint, scenario, arm, flat, answers, clients)
    entry = cache.get("eval", key)
    if entry is not None:
        meta, _ = entry
        return Evaluated(**(meta | {"client_seconds": 0.0}))
    start = time.perf_counter()
    result = task.evaluate(arm, flat, answers, clients)
    cache.put("eval", key, result.to_json(), {}, time.perf_counter() - start)
    return result
