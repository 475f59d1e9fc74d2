"""The client side of a client-round: train from the downloaded state, encode the update.

A client-round (`client_update`) loads the global adapter the client downloaded into the run's
one model (simulator/training/task.py), runs the local steps with the client-round's own seed
(local.py) under the arm's client algorithm (algorithms.py) and encodes the delta with the
arm's codec into real bytes (simulator/methods/). Those bytes then cross the network
(simulator/network/) to the server model, which decodes them (simulator/server/model.py).
What the client keeps across its rounds (an error-feedback residual, SCAFFOLD's c_i) travels
in and out with the job, so any executor can run it. An algorithm's uploads (SCAFFOLD's Δc_i)
are encoded with the arm's downlink codec, the one its server arrays come down in, and bundled
after the update (simulator/server/control.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator import seeds
from simulator.methods import registry
from simulator.methods.base import CodecContext
from simulator.scenario import Method
from simulator.server.control import bundle
from simulator.training.local import LocalStats, train_local

if TYPE_CHECKING:
    from simulator.training.task import RealTask


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
    client: str = registry.DEFAULT_CLIENT
    client_options: dict[str, Any] = field(default_factory=dict)
    downlink_codec: str = "fp16"
    downlink_codec_options: dict[str, Any] = field(default_factory=dict)

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
            method.client,
            dict(method.client_options),
            method.downlink_codec,
            dict(method.downlink_codec_options),
        )

    def make_codec(self) -> Any:
        """A codec object for this arm (stateless: per-client state travels in the context)."""
        return registry.codec(self.codec, self.codec_options)

    def make_policy(self) -> Any | None:
        """The arm's token policy, or None to train on every token."""
        return registry.policy(self.token_policy, self.token_options)

    def make_algorithm(self) -> Any:
        """The arm's client algorithm (stateless: per-client state travels in the job)."""
        return registry.client_algorithm(self.client, self.client_options)

    def make_downlink_codec(self) -> Any:
        """The codec of the broadcast, which an algorithm's uploads share."""
        return registry.codec(self.downlink_codec, self.downlink_codec_options)


@dataclass(frozen=True)
class Job:
    """One client-round to train: the global adapter it downloaded, its persistent state and
    the client algorithm's server arrays it downloaded with the adapter (SCAFFOLD's c)."""

    client: int
    round: int
    global_flat: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)
    budget_bytes: int | None = None
    shared: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Update:
    """What a client-round produced: the encoded message and what the client keeps."""

    client: int
    message: bytes
    num_samples: int
    stats: LocalStats
    state: dict[str, np.ndarray]


def client_update(task: RealTask, arm: Arm, job: Job) -> Update:
    """Train one client-round from the downloaded adapter and encode its delta: the same
    function in every executor, so results do not depend on where it runs."""
    task.use(arm)
    task.model.set_flat(job.global_flat)
    seed = seeds.seed_sequence(task.seed, "training", job.client, job.round)
    side = seeds.seed_sequence(task.seed, "training", job.client, job.round, 1)
    codec_seed, hook_seed = (int(x) for x in side.generate_state(2))
    codec = arm.make_codec()
    algorithm = arm.make_algorithm()
    policy = arm.make_policy()
    hook = None if policy is None else policy.hook(task.vocab_size, task.special_ids, hook_seed)
    settings = task.spec.local
    if arm.local_steps is not None:
        settings = settings.model_copy(update={"steps": arm.local_steps})
    indices = task.parts[job.client]
    local = algorithm.begin(task.model.params, job.state, job.shared, settings.lr)
    delta, stats = train_local(
        task.model,
        task.tokens,
        indices,
        settings,
        task.flops,
        seed,
        hook,
        codec.fisher_rho if codec.needs_fisher else None,
        local.correct,
    )
    kept, uploads = local.finish(delta, stats.steps)
    context = CodecContext(
        task.model.groups, codec_seed, {**job.state, **kept}, stats.fisher, job.budget_bytes
    )
    message = codec.encode(delta, context)
    stats.fisher = None  # used; not shipped back from workers
    if algorithm.shared:
        message = bundle([message, *_encode_uploads(task, arm, job, algorithm.shared, uploads)])
    return Update(job.client, message, len(indices), stats, context.state)


def _encode_uploads(
    task: RealTask, arm: Arm, job: Job, names: tuple[str, ...], uploads: dict[str, np.ndarray]
) -> list[bytes]:
    """The algorithm's uploads in the arm's downlink codec, one message per server array, each
    seeded by its own scope of the client-round."""
    codec = arm.make_downlink_codec()
    messages = []
    for part, name in enumerate(names):
        seed = seeds.seed_sequence(task.seed, "training", job.client, job.round, 2, part)
        context = CodecContext(task.model.groups, int(seed.generate_state(1)[0]))
        messages.append(codec.encode(uploads[name], context))
    return messages
