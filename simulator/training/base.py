"""The trainer protocol the engine drives: the math side of a client event, without time.

The engine owns simulated time and never imports torch; a trainer owns the math and never
imports simpy. A trainer's work inside an event takes zero simulated time: its simulated
duration comes from `LocalResult.compute_s`, or from `work_flop` divided by the device speed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class LocalResult:
    """What one client's local round produced."""

    message: bytes | int  # the encoded update, or (surrogate mode) only its size in bytes
    num_samples: int
    compute_s: float | None = None  # fixed simulated seconds, or ...
    work_flop: float | None = None  # ... counted work, divided by the client's FLOP/s
    loss_first: float | None = None  # real training: the first and last local step's loss
    loss_last: float | None = None
    tokens: int | None = None  # non-padding tokens trained on

    @property
    def uplink_bytes(self) -> int:
        """Bytes on the wire: len() of the real message, or the surrogate size."""
        return self.message if isinstance(self.message, int) else len(self.message)

    def compute_seconds(self, device_flops: float) -> float:
        """Simulated compute time on a device of the given sustained FLOP/s."""
        if self.compute_s is not None:
            return self.compute_s
        assert self.work_flop is not None
        return self.work_flop / device_flops


class Trainer(Protocol):
    """Local training, aggregation and evaluation for one method arm."""

    mode: str  # "surrogate" or "real": written into every output
    source: str  # evals.csv `source`: "surrogate" (modelled) or "measured"

    def downlink_bytes(self, client: int) -> int:
        """Bytes of the global model state a client downloads before training."""

    def begin_round(
        self, starts: list[tuple[int, int]], uplink: Callable[[int, float], int]
    ) -> None:
        """These (client, round) pairs received the current global state and train now (a
        trainer may batch them). round is the client-round's seed coordinate: the round, or
        FedBuff's start counter; a client trains on the global state as it is at this call.

        uplink(client, seconds) is the bytes the client's uplink can deliver within that many
        seconds from now, for codecs that size their message by the link.
        """

    def train(self, client: int, round_index: int) -> LocalResult:
        """The client's local result for the round begin_round started."""

    def aggregate(
        self,
        round_index: int,
        received: list[tuple[int, LocalResult]],
        weights: list[float] | None = None,
    ) -> set[int]:
        """Fold the received updates into the global state, which becomes version round_index.

        Update k weighs num_samples_k·weights[k] (weights None: 1), normalised over the updates
        kept; FedBuff passes its staleness weights. Returns the positions in `received` of the
        messages rejected (failed to decode), which are left out.
        """

    def evaluate(self, round_index: int) -> dict[str, float]:
        """Metrics of the global state, by name."""

    def views(self) -> dict[str, dict[str, float]]:
        """The last evaluation's metrics per view (evals.csv `group`: a group or label value,
        clients:mean/worst10/std), by view; {} when it computed none."""

    def state(self) -> dict[str, Any]:
        """JSON-safe state needed to resume after the last finished round."""

    def restore(self, state: dict[str, Any]) -> None:
        """Load what state() returned."""

    def finish(self) -> None:
        """Write final artefacts (e.g. the trained adapter) through the arm's recorder."""

    def host_seconds(self) -> dict[str, float]:
        """Host seconds this process spent in model math, by part (for the manifest)."""
