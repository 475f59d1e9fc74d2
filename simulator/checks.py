"""What `validate` and `run` check before anything touches disk, beyond the schema.

Every trace and data file loads; the model resolves, and its config, tokenizer and pickled
weight files are usable and its positions hold seq_len, checked without loading weights (a
run would otherwise fail on them after making its folder); the first round (FedBuff: the first
server update) of every surrogate arm really runs, on the engine itself, so a scenario whose
run would stall (nobody ever online, no update ever arriving) fails here with the run's own
error; a real-training run's first selection is probed the same way. What would run but give
implausible results comes back as warnings: links slower than 1 kbps or faster than 3 Gbps
on average (a trace read with the wrong `rate_unit`, a typo in `mbps`), first rounds longer
than a simulated day, a device mix whose shares do not sum to 1.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from simulator.engine import MAX_WAIT_S, NO_CLIENT_RETRY_S, Engine
from simulator.errors import ModelError, StalledRunError, located
from simulator.network.link import LinkSet
from simulator.network.traces import PLAUSIBLE_BPS, format_rate
from simulator.rounds import RoundOutcome
from simulator.scenario import Method, RealTraining, Scenario, TraceLink
from simulator.training.surrogate import SurrogateTrainer
from simulator.world import World, build_world

MIN_BPS, MAX_BPS = PLAUSIBLE_BPS
MAX_ROUND_S = 86_400.0  # a first round longer than a simulated day is almost surely a unit error


@dataclass
class Checked:
    """A scenario that passed: its World, what validate says of it, and its warnings."""

    world: World
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_scenario(scenario: Scenario, source: str) -> Checked:
    """Build the World, load the training inputs and try the first round; raises the
    SimulatorError a run would, and collects warnings."""
    world = build_world(scenario, source)
    checked = Checked(world)
    checked.warnings += _mix_warnings(scenario)
    coverage = world.availability.coverage(scenario.population.clients)
    if coverage:
        checked.notes.append(coverage)
    for direction, links in (("uplink", world.uplinks), ("downlink", world.downlinks)):
        checked.warnings += _link_warnings(scenario, direction, links)
    if scenario.training.mode == "real":
        _check_model(scenario, source)
        checked.notes.append(_check_training(scenario))
        _probe_first_selection(world)
    else:
        for method in scenario.methods:
            checked.warnings += _round_warnings(method, _first_round(world, method))
    return checked


def _mix_warnings(scenario: Scenario) -> list[str]:
    """Mix values are used as relative weights; shares that do not sum to 1 are likely a
    forgotten or mistyped class, so say which shares the run uses."""
    mix = scenario.population.mix
    total = sum(mix.values())
    if math.isclose(total, 1.0, rel_tol=1e-6):
        return []
    shares = ", ".join(f"{name} {value / total:.3g}" for name, value in mix.items())
    return [
        f"population.mix sums to {total:g}, not 1: the run uses it as relative weights, "
        f"i.e. shares {shares}; give fractions that sum to 1 to silence this"
    ]


def _link_warnings(scenario: Scenario, direction: str, links: LinkSet) -> list[str]:
    means = links.mean_bps_all()
    spec = getattr(scenario.network, direction)
    if isinstance(spec, TraceLink):
        hint = f"the trace's units (format {spec.format!r}, options {spec.options}) and scale"
    else:
        hint = f"network.{direction}"
    slowest, fastest = int(means.argmin()), int(means.argmax())
    found = []
    if means[slowest] < MIN_BPS:
        found.append(_rate_warning(direction, slowest, float(means[slowest]), "below", hint))
    if MAX_BPS < means[fastest] < float("inf"):
        found.append(_rate_warning(direction, fastest, float(means[fastest]), "above", hint))
    return found


def _rate_warning(direction: str, client: int, mean: float, side: str, hint: str) -> str:
    bound = MIN_BPS if side == "below" else MAX_BPS
    return (
        f"{direction} of client {client} averages {format_rate(mean)}, {side} the "
        f"{format_rate(bound)} of any real link: check {hint}"
    )


class _FirstRoundDone(Exception):
    def __init__(self, outcome: RoundOutcome) -> None:
        self.outcome = outcome


def _first_round(world: World, method: Method) -> RoundOutcome:
    """Round 1 (FedBuff: server update 1) of a surrogate arm, on the engine itself."""

    def stop(outcome: RoundOutcome) -> None:
        raise _FirstRoundDone(outcome)

    engine = Engine(world, method, SurrogateTrainer(world.scenario, method))
    try:
        engine.run(1, 0.0, stop)
    except _FirstRoundDone as done:
        return done.outcome
    raise AssertionError("the engine ended without a first round")


def _round_warnings(method: Method, outcome: RoundOutcome) -> list[str]:
    seconds = outcome.end_s - outcome.start_s
    if seconds <= MAX_ROUND_S:
        return []
    slowest = outcome.straggler
    who = "" if slowest is None else f" (it waits on client {slowest.client})"
    return [
        f"arm {method.name!r}: round 1 lasts {seconds:.4g} s ({seconds / 86_400:.3g} days) of "
        f"simulated time{who}, more than the {MAX_ROUND_S:g} s a plausible round takes: check "
        "the links' rates and the arm's payload and compute"
    ]


def _probe_first_selection(world: World) -> None:
    """Real training: that someone is online for round 1 within the engine's patience."""
    n = world.scenario.population.clients
    looks = (k * NO_CLIENT_RETRY_S for k in itertools.count())
    if world.availability.first_online(range(n), looks, MAX_WAIT_S) is None:
        raise StalledRunError(
            f"nobody comes online in the first {MAX_WAIT_S / 86_400:g} days of simulated time "
            f"({world.availability.describe()}), so the run would never start. Fix: make "
            "clients online more often (availability.mean_online_s, mean_offline_s or the "
            "sessions file)"
        )


POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")

MODEL_FIX = "give a model folder written by save_pretrained (config.json, tokenizer and weights)"


def _check_model(scenario: Scenario, source: str) -> None:
    """Real training: the model's config and tokenizer load, its pickled weight files (if it
    has no safetensors) hold only what torch loads, and the sequences fit its positions; all
    without loading weights, so a run never fails on them after its folder exists."""
    from transformers import AutoConfig

    from simulator.training.models import load_tokenizer, require_on_disk

    spec = scenario.training
    assert isinstance(spec, RealTraining)
    folder = require_on_disk(spec.model)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises ValueError, OSError, KeyError, TypeError...
        problem = f"the config.json of {folder} is not a usable model config ({_first_line(exc)})"
        raise ModelError(located(source, "training.model", problem, MODEL_FIX)) from None
    load_tokenizer(spec)
    if Path(folder).is_dir():
        _check_weight_files(Path(folder), source)
    limit = next((v for k in POSITION_KEYS if isinstance(v := getattr(config, k, None), int)), None)
    generated = scenario.evaluation.max_new_tokens if scenario.evaluation.generate_every else 0
    if limit is not None and spec.local.seq_len + generated > limit:
        extra = f" + evaluation.max_new_tokens ({generated})" if generated else ""
        raise ModelError(
            located(
                source,
                "training.local.seq_len",
                f"{spec.local.seq_len}{extra} tokens exceed the {limit} positions of "
                f"{spec.model!r} ({config.model_type})",
                f"lower seq_len to at most {limit - generated}",
            )
        )


def _check_weight_files(folder: Path, source: str) -> None:
    """Pickled weights (`*.bin`, used when a folder has no safetensors) that torch's safe
    loader would refuse: found by reading the pickle's globals, never by running it."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    if any(folder.glob("*.safetensors")):
        return
    for path in sorted(folder.glob("*.bin")):
        try:
            unsafe = get_unsafe_globals_in_checkpoint(path)
        except Exception as exc:  # any unreadable file: the loader would fail too
            unsafe = [f"not a torch checkpoint: {_first_line(exc)}"]
        if unsafe:
            raise ModelError(
                located(
                    source,
                    "training.model",
                    f"{path} holds what torch's safe loader refuses ({', '.join(unsafe)})",
                    "save the weights as safetensors (save_pretrained) from a copy you trust",
                )
            )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_training(scenario: Scenario) -> str:
    """Real training: resolve the model, load and partition the data; a description."""
    from simulator.training.data import load_data
    from simulator.training.models import require_on_disk
    from simulator.training.partition import partition

    spec = scenario.training
    require_on_disk(spec.model)
    data = load_data(spec.data, spec.task, scenario.seed)
    parts = partition(spec.partition, data, scenario.population.clients, scenario.seed)
    sizes = [len(p) for p in parts]
    return (
        f"{spec.model} on {len(data.train)} examples ({len(data.validation)} held out, "
        f"{min(sizes)}-{max(sizes)} per client), torch threads: {spec.threads}"
    )
