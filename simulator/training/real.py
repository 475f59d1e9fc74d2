"""Real training: the Trainer of `mode = "real"` and the client-round work executors run.

`RealTask` is everything the arms of a run share and no client owns: the one base model with
its LoRA adapter, the data set tokenised once, the partition, the FLOP model. A client-round
(`RealTask.client_update`) loads the global adapter the client downloaded, runs the local steps
with the client-round's own seed, and encodes the delta with the arm's codec into real bytes:
the same function in every executor, so results do not depend on where it runs.

`RealTrainer` is the server side of one arm: it holds the global adapter (fp32), broadcasts it
with the arm's downlink codec (dense fp16 by default; clients train from the decoded state, so
a lossy downlink really costs accuracy), sends jobs to the executor, decodes the received
messages, aggregates them with FedAvg (sample counts times the strategy's weights) and
evaluates. A client trains when it starts, on the global version current then, so the
trainer keeps no older versions: under FedBuff the in-flight updates wait as messages.
Checkpoints: after every round the global adapter and every client's codec state (e.g. its
error-feedback residual) are written to `state-r<round>.npz` beside the run's checkpoint
(sha256 recorded in it). No random state carries across rounds (each client-round reseeds from
its seed scope), so those arrays are the whole state to resume from.
At the end the adapter is saved with PEFT's `save_pretrained` into `adapter/`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simulator import seeds
from simulator.errors import MessageError, RunDirError
from simulator.methods import registry
from simulator.methods.base import CodecContext
from simulator.recorder import write_json_atomic
from simulator.scenario import Method, PubMedQAData, Scenario
from simulator.server.aggregation import fedavg
from simulator.training.base import LocalResult
from simulator.training.data import load_data, tokenize
from simulator.training.evaluate import evaluate, generate, generation_metrics
from simulator.training.flops import FlopModel
from simulator.training.local import HostTime, LocalStats, train_local
from simulator.training.models import load_model, load_tokenizer
from simulator.training.partition import partition, write_histogram

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arm:
    """What a worker needs to know of a method arm."""

    name: str
    codec: str
    codec_options: dict[str, Any]
    token_policy: str
    token_options: dict[str, Any]
    freeze_a: bool
    local_steps: int | None

    @classmethod
    def of(cls, method: Method) -> Arm:
        """The arm of a scenario method."""
        return cls(
            method.name,
            method.codec,
            dict(method.codec_options),
            method.token_policy,
            dict(method.token_options),
            method.freeze_a,
            method.local_steps,
        )

    def make_codec(self) -> Any:
        """A codec object for this arm (stateless: per-client state travels in the context)."""
        return registry.codec(self.codec, self.codec_options)

    def make_policy(self) -> Any | None:
        """The arm's token policy, or None to train on every token."""
        return registry.policy(self.token_policy, self.token_options)


@dataclass(frozen=True)
class Job:
    """One client-round to train: the global adapter it downloaded and its persistent state."""

    client: int
    round: int
    global_flat: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)
    budget_bytes: int | None = None


@dataclass(frozen=True)
class Update:
    """What a client-round produced: the encoded message and what the client keeps."""

    client: int
    message: bytes
    num_samples: int
    stats: LocalStats
    state: dict[str, np.ndarray]


class RealTask:
    """The run's shared model, data, tokens and partition (built once per process)."""

    def __init__(self, scenario: Scenario) -> None:
        spec = scenario.training
        torch.set_num_threads(spec.threads)  # results depend on it: the run's, in every process
        self.spec = spec
        self.seed = scenario.seed
        self.data = load_data(spec.data, spec.task, scenario.seed)
        self.evaluation = scenario.evaluation
        self.rounds = scenario.server.rounds
        self.tokenizer = tokenizer = load_tokenizer(spec)
        self.tokens = tokenize(self.data, tokenizer, spec.local.seq_len)
        self.parts = partition(
            spec.partition, self.data, scenario.population.clients, scenario.seed
        )
        self.model = load_model(
            spec, len(self.data.label_names), tokenizer.pad_token_id, scenario.seed
        )
        self.special_ids = list(tokenizer.all_special_ids)
        self.vocab_size = self.model.model.get_input_embeddings().num_embeddings
        self._configure(freeze_a=False)

    def _configure(self, freeze_a: bool) -> None:
        self.model.configure(freeze_a)
        self.freeze_a = freeze_a
        self.flops = FlopModel.of(self.model.model, self.spec.task)

    def use(self, arm: Arm) -> None:
        """Configure the model for an arm (what trains) when it differs from the current one."""
        if arm.freeze_a != self.freeze_a:
            self._configure(arm.freeze_a)

    def initial_flat(self, arm: Arm) -> np.ndarray:
        """The seeded initial adapter of an arm (the same for every arm of a run)."""
        self._configure(arm.freeze_a)
        return self.model.get_flat()

    def client_update(self, arm: Arm, job: Job) -> Update:
        """Train one client-round from the downloaded adapter and encode its delta."""
        self.use(arm)
        self.model.set_flat(job.global_flat)
        seed = seeds.seed_sequence(self.seed, "training", job.client, job.round)
        side = seeds.seed_sequence(self.seed, "training", job.client, job.round, 1)
        codec_seed, hook_seed = (int(x) for x in side.generate_state(2))
        codec = arm.make_codec()
        policy = arm.make_policy()
        hook = None if policy is None else policy.hook(self.vocab_size, self.special_ids, hook_seed)
        settings = self.spec.local
        if arm.local_steps is not None:
            settings = settings.model_copy(update={"steps": arm.local_steps})
        indices = self.parts[job.client]
        delta, stats = train_local(
            self.model,
            self.tokens,
            indices,
            settings,
            self.flops,
            seed,
            hook,
            codec.fisher_rho if codec.needs_fisher else None,
        )
        context = CodecContext(
            self.model.groups, codec_seed, dict(job.state), stats.fisher, job.budget_bytes
        )
        message = codec.encode(delta, context)
        stats.fisher = None  # used; not shipped back from workers
        return Update(job.client, message, len(indices), stats, context.state)

    def evaluate(
        self, arm: Arm, flat: np.ndarray, answers: bool = False
    ) -> tuple[dict[str, float], list[dict[str, str]]]:
        """Metrics of a global adapter on the held-out split; with answers, also greedy
        generations for the first generate_samples held-out prompts, scored, and returned."""
        self.use(arm)
        self.model.set_flat(flat)
        batch = self.spec.eval_batch_size
        metrics = evaluate(self.model, self.tokens, self.data.validation, batch)
        if not answers:
            return metrics, []
        spec = self.evaluation
        rows = self.data.validation[: spec.generate_samples]
        said = generate(self.model, self.tokenizer, self.tokens, rows, spec.max_new_tokens, batch)
        decisions = isinstance(self.spec.data, PubMedQAData)
        metrics |= generation_metrics(said, self.data, rows, decisions)
        assert self.data.prompts is not None
        samples = [
            {"prompt": self.data.prompts[i], "reference": self.data.texts[i], "answer": answer}
            for i, answer in zip(rows.tolist(), said, strict=True)
        ]
        return metrics, samples


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class RealTrainer:
    """The server side of one arm: global adapter, FedAvg over decoded messages, evaluation."""

    mode = "real"
    source = "measured"

    def __init__(self, task: RealTask, executor: Any, method: Method, folder: Path) -> None:
        self.task = task
        self.executor = executor
        self.arm = Arm.of(method)
        self.folder = folder
        self.codec = self.arm.make_codec()
        self.global_flat = task.initial_flat(self.arm)
        self.groups = task.model.groups
        self.round_done = 0
        self.downlink = registry.codec(method.downlink_codec, method.downlink_codec_options)
        self._broadcast: tuple[int, np.ndarray] | None = None  # of the current global adapter
        self.pending: dict[int, LocalResult] = {}
        self.client_state: dict[int, dict[str, np.ndarray]] = {}
        self.host = HostTime()
        self.host_eval = 0.0
        self.samples: dict[str, Any] | None = None  # the latest generated answers
        folder.mkdir(parents=True, exist_ok=True)
        write_histogram(folder / "partition.csv", task.parts, task.data)

    def broadcast(self) -> tuple[int, np.ndarray]:
        """The current global adapter as clients receive it: the downlink message's length and
        the state it decodes to (encoded once per version, seeded by the version)."""
        if self._broadcast is None:
            seed = seeds.seed_sequence(self.task.seed, "downlink", self.round_done)
            context = CodecContext(self.groups, int(seed.generate_state(1)[0]))
            message = self.downlink.encode(self.global_flat, context)
            self._broadcast = (len(message), self.downlink.decode(message, context))
        return self._broadcast

    def downlink_bytes(self, client: int) -> int:
        """The downlink message of the global adapter (the same for every client)."""
        return self.broadcast()[0]

    def begin_round(
        self, starts: list[tuple[int, int]], uplink: Callable[[int, float], int]
    ) -> None:
        """Train every client that received the global adapter, through the executor."""
        budget_for = getattr(self.codec, "budget_for", None)
        received = self.broadcast()[1]
        jobs = [
            Job(
                c,
                round_index,
                received,
                self.client_state.get(c, {}),
                None if budget_for is None else budget_for(lambda s, c=c: uplink(c, s)),
            )
            for c, round_index in starts
        ]
        for update in self.executor.run(self.arm, jobs):
            self.client_state[update.client] = update.state
            stats = update.stats
            self.host.forward += stats.host.forward
            self.host.backward += stats.host.backward
            self.host.optimizer += stats.host.optimizer
            self.pending[update.client] = LocalResult(
                update.message, update.num_samples, work_flop=stats.work_flop
            )

    def train(self, client: int, round_index: int) -> LocalResult:
        """The client's result, trained in begin_round."""
        return self.pending.pop(client)

    def aggregate(
        self,
        round_index: int,
        received: list[tuple[int, LocalResult]],
        weights: list[float] | None = None,
    ) -> set[int]:
        """Decode every received message (server side) and apply the weighted FedAvg mean.

        A message that fails to decode is rejected, logged and left out; the round goes on.
        """
        context = CodecContext(self.groups)
        factors = [1.0] * len(received) if weights is None else weights
        updates, rejected = [], set()
        for index, ((client, result), factor) in enumerate(zip(received, factors, strict=True)):
            try:
                delta = self.codec.decode(result.message, context)
            except MessageError as exc:
                log.warning("round %d: rejected client %d's message: %s", round_index, client, exc)
                rejected.add(index)
                continue
            updates.append((result.num_samples * factor, delta))
        mean = fedavg(updates)
        if mean is not None:
            self.global_flat = self.global_flat + mean
        self._broadcast = None
        self.pending.clear()
        self.round_done = round_index
        return rejected

    def evaluate(self, round_index: int) -> dict[str, float]:
        """Metrics of the current global adapter; generation metrics at the rounds that are
        multiples of evaluation.generate_every, and at the last."""
        start = time.perf_counter()
        every, last = self.task.evaluation.generate_every, self.task.rounds
        answers = bool(every) and (round_index % every == 0 or round_index == last)
        metrics, samples = self.task.evaluate(self.arm, self.global_flat, answers)
        if samples:
            self.samples = {"round": round_index, "samples": samples}
        self.host_eval += time.perf_counter() - start
        return metrics

    def state(self) -> dict[str, Any]:
        """Write this round's arrays (the global adapter and every client's codec state, e.g.
        an error-feedback residual); the checkpoint records the file and its hash."""
        path = self.folder / f"state-r{self.round_done}.npz"
        arrays = {"global": self.global_flat}
        for client, kept in self.client_state.items():
            arrays.update({f"client-{client}-{key}": value for key, value in kept.items()})
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        stale = self.folder / f"state-r{self.round_done - 2}.npz"
        stale.unlink(missing_ok=True)  # two back: no checkpoint can still point at it
        return {"round": self.round_done, "arrays": path.name, "sha256": _sha256(path)}

    def restore(self, state: dict[str, Any]) -> None:
        """Load the arrays a checkpoint points at, checking their hash."""
        path = self.folder / state["arrays"]
        if not path.exists() or _sha256(path) != state["sha256"]:
            raise RunDirError(
                f"{path}: missing or not the state the checkpoint recorded; delete this "
                "arm's folder to rerun the arm"
            )
        with np.load(path) as arrays:
            self.global_flat = arrays["global"]
            self.client_state = {}
            for name in arrays.files:
                if name.startswith("client-"):
                    _, client, key = name.split("-", 2)
                    self.client_state.setdefault(int(client), {})[key] = arrays[name]
        self._broadcast = None
        self.round_done = int(state["round"])

    def host_seconds(self) -> dict[str, float]:
        """Forward, backward and optimizer seconds of local training (in whichever process ran
        it) and evaluation seconds, since this trainer was created."""
        return {
            "forward": self.host.forward,
            "backward": self.host.backward,
            "optimizer": self.host.optimizer,
            "evaluation": self.host_eval,
        }

    def finish(self, folder: Path) -> None:
        """Save the final adapter with PEFT's save_pretrained and drop the round files."""
        self.task.use(self.arm)
        self.task.model.save_adapter(self.global_flat, folder / "adapter")
        if self.samples is not None:
            write_json_atomic(folder / "generations.json", self.samples)
        for path in folder.glob("state-r*.npz"):
            if path.name != f"state-r{self.round_done}.npz":
                path.unlink()
