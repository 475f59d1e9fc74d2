"""Real training: the Trainer of `mode = "real"`, between the engine and the two ends of the
message path.

`RealTrainer` drives one arm: it sends the clients that received the global state to the
executor as jobs (each runs simulator/training/client.py: train + encode, in any process),
keeps what each client carries across its rounds (its codec state, e.g. an error-feedback
residual), hands the messages that reached the server to the server model
(simulator/server/model.py: decode, reject, aggregate, step) and evaluates the global state on
the run's shared task (task.py). A client trains when it starts, on the global version current
then, so no older versions are kept: under FedBuff the in-flight updates wait as messages.
Checkpoints: after every round the server model's arrays (global adapter, server-optimizer
moments, a client algorithm's server arrays) and every client's codec and algorithm state
go to `state-r<round>.npz` beside the run's checkpoint (sha256 recorded in it). No random
state carries across rounds (each client-round reseeds from its seed scope), so those arrays
are the whole state to resume from. At the end the adapter is saved with PEFT's
`save_pretrained` into `adapter/`. `masks.csv` holds a token policy's mask diagnostics per
client-round (simulator/methods/tokens.py: MaskDiagnostics), `client_evals.csv` the per-client
evaluation values and `generations.json` the answers of every generating round, each rewritten
with every checkpoint (a resumed arm reads the last two back, up to its checkpoint's round).
Every file is written by the arm's recorder (simulator/recorder.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from simulator.methods import registry
from simulator.recorder import ArmRecorder
from simulator.scenario import Method
from simulator.server.model import ServerModel
from simulator.server.optimizers import OPTIMIZERS
from simulator.training.base import LocalResult
from simulator.training.client import Arm, Job
from simulator.training.evaluate import Evaluated, Views
from simulator.training.local import HostTime
from simulator.training.partition import partition_table
from simulator.training.task import RealTask

MASK_COLUMNS = ("round", "client", "kept_share", "unscored_share", "prefix_jaccard", "prefix_rows")
CLIENT_EVAL_COLUMNS = ("round", "client", "metric", "value")


class RealTrainer:
    """One arm's trainer: clients through the executor, the server model, evaluation."""

    mode = "real"
    source = "measured"

    def __init__(
        self,
        task: RealTask,
        executor: Any,
        method: Method,
        recorder: ArmRecorder,
        evaluate: Callable[..., Evaluated] | None = None,
    ) -> None:
        self.task = task
        self._evaluate = evaluate or task.evaluate  # (arm, flat, answers, clients); maybe cached
        self.executor = executor
        self.arm = Arm.of(method)
        self.recorder = recorder
        self.codec = self.arm.make_codec()
        self.server = ServerModel(
            task.initial_flat(self.arm),
            task.model.groups,
            self.codec,
            registry.codec(method.downlink_codec, method.downlink_codec_options),
            OPTIMIZERS.build(method.server_optimizer, method.server_optimizer_options),
            task.seed,
            self.arm.make_algorithm(),
            len(task.parts),
        )
        self.pending: dict[int, LocalResult] = {}
        self.client_state: dict[int, dict[str, np.ndarray]] = {}
        self.host = HostTime()
        self.host_eval = 0.0
        self.host_client_eval = 0.0
        self.generations: list[dict[str, Any]] = []  # generations.json: per generating round
        self.client_evals: list[list[Any]] = []  # client_evals.csv rows
        self._views: Views = {}
        self._written = (0, 0)  # generations and client_evals rows already on disk
        self.masks: list[list[float]] = []  # masks.csv rows
        recorder.write_table("partition.csv", *partition_table(task.parts, task.data))

    def downlink_bytes(self, client: int) -> int:
        """The downlink messages of the global adapter and the client algorithm's server arrays
        (the same for every client)."""
        return self.server.broadcast()[0]

    def begin_round(
        self, starts: list[tuple[int, int]], uplink: Callable[[int, float], int]
    ) -> None:
        """Train every client that received the global adapter, through the executor."""
        received = self.server.broadcast()[1]
        shared = self.server.broadcast_arrays()
        jobs = [
            Job(
                c,
                round_index,
                received,
                self.client_state.get(c, {}),
                self.codec.budget_for(lambda s, c=c: uplink(c, s)),
                shared,
            )
            for c, round_index in starts
        ]
        for job, update in zip(jobs, self.executor.run(self.arm, jobs), strict=True):
            self.client_state[update.client] = update.state
            stats = update.stats
            if stats.mask is not None:
                self.masks.append(
                    [job.round, job.client, *(stats.mask[c] for c in MASK_COLUMNS[2:])]
                )
            self.host.forward += stats.host.forward
            self.host.backward += stats.host.backward
            self.host.optimizer += stats.host.optimizer
            self.pending[update.client] = LocalResult(
                update.message,
                update.num_samples,
                work_flop=stats.work_flop,
                loss_first=stats.loss_first,
                loss_last=stats.loss_last,
                tokens=stats.tokens,
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
        """Hand the received messages to the server model, update k weighted by its sample
        count times weights[k]; returns the positions of those rejected (failed to decode)."""
        factors = [1.0] * len(received) if weights is None else weights
        messages = [
            (client, result.message, result.num_samples * factor)
            for (client, result), factor in zip(received, factors, strict=True)
        ]
        self.pending.clear()
        return self.server.receive(round_index, messages)  # type: ignore[arg-type]

    def evaluate(self, round_index: int) -> dict[str, float]:
        """Metrics of the current global adapter (its views kept for `views`); generation
        metrics and per-client evaluation at the rounds that are multiples of
        evaluation.generate_every and clients_every, and at the last."""
        start = time.perf_counter()
        spec, last = self.task.evaluation, self.task.rounds

        def due(every: int) -> bool:
            return bool(every) and (round_index % every == 0 or round_index == last)

        result = self._evaluate(
            self.arm, self.server.weights, due(spec.generate_every), due(spec.clients_every)
        )
        self._views = result.views
        if result.samples:
            self.generations.append({"round": round_index, "samples": result.samples})
        self.client_evals += [
            [round_index, int(client), metric, value]
            for client, metrics in result.clients.items()
            for metric, value in metrics.items()
        ]
        self.host_client_eval += result.client_seconds
        self.host_eval += time.perf_counter() - start - result.client_seconds
        return result.metrics

    def views(self) -> Views:
        """The last evaluation's metrics per group value and per-client summary."""
        return self._views

    def _write_evaluations(self) -> None:
        """generations.json and client_evals.csv, when they gained rows since last written."""
        counts = (len(self.generations), len(self.client_evals))
        if counts == self._written:
            return
        if self.generations:
            self.recorder.write_json("generations.json", {"rounds": self.generations})
        if self.client_evals:
            self.recorder.write_table("client_evals.csv", CLIENT_EVAL_COLUMNS, self.client_evals)
        self._written = counts

    def state(self) -> dict[str, Any]:
        """Write this round's arrays (the global adapter and every client's codec state, e.g.
        an error-feedback residual); the checkpoint records the file and its hash."""
        done = self.server.version
        arrays = self.server.arrays()
        for client, kept in self.client_state.items():
            arrays.update({f"client-{client}-{key}": value for key, value in kept.items()})
        if self.masks:
            arrays["masks"] = np.array(self.masks, dtype=np.float64)
            self.recorder.write_table("masks.csv", MASK_COLUMNS, self.masks)
        self._write_evaluations()
        return {"round": done, **self.recorder.write_arrays(f"state-r{done}", arrays)}

    def restore(self, state: dict[str, Any]) -> None:
        """Load the arrays a checkpoint points at (their hash checked)."""
        arrays = self.recorder.read_arrays(state)
        self.server.load(arrays, int(state["round"]))
        self.client_state = {}
        saved = arrays["masks"].tolist() if "masks" in arrays else []
        self.masks = [[int(r), int(c), *rest] for r, c, *rest in saved]
        done = int(state["round"])
        saved_answers = self.recorder.read_json("generations.json") or {"rounds": []}
        self.generations = [g for g in saved_answers["rounds"] if g["round"] <= done]
        self.client_evals = [
            [int(row["round"]), int(row["client"]), row["metric"], float(row["value"])]
            for row in self.recorder.read_rows("client_evals.csv")
            if int(row["round"]) <= done
        ]
        for name, value in arrays.items():
            if name.startswith("client-"):
                _, client, key = name.split("-", 2)
                self.client_state.setdefault(int(client), {})[key] = value

    def host_seconds(self) -> dict[str, float]:
        """Forward, backward and optimizer seconds of local training (in whichever process ran
        it) and evaluation seconds, since this trainer was created."""
        return {
            "forward": self.host.forward,
            "backward": self.host.backward,
            "optimizer": self.host.optimizer,
            "evaluation": self.host_eval,
            "client_evaluation": self.host_client_eval,
        }

    def _label_names(self) -> tuple[str, ...]:
        """A classifier's classes (instruction data's labels are metadata, not outputs)."""
        return self.task.data.label_names if self.task.spec.task == "classification" else ()

    def finish(self) -> None:
        """Save the final adapter with PEFT's save_pretrained, and the evaluations' files."""
        self.task.use(self.arm)
        weights = self.server.weights
        self.recorder.manifest["trainable_parameters"] = int(weights.size)
        data = self.task.data
        if data.eval_rows is not None:  # which rows every evaluation scored (data.eval_samples)
            self.recorder.manifest["evaluation_rows"] = data.eval_rows.tolist()
        self.recorder.write_folder(
            "adapter",
            lambda folder: self.task.model.save_adapter(
                weights, folder, self.task.spec.model, self._label_names()
            ),
        )
        self._write_evaluations()
