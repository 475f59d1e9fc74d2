"""TensorBoard event files of a run, written as rounds are recorded (`fstq-sim run
--tensorboard DIR`): one folder per arm, so TensorBoard lists the arms as runs.

Every evaluated metric (`eval/<metric>`) and every numeric column of rounds.csv
(`round/<column>`) is written twice: against the round (step = round) and against simulated
seconds (`..._vs_sim_s`, step = whole simulated seconds). Each event's wall time is the
simulated clock too, so TensorBoard's "relative" axis reads simulated time; host time never
appears (results use only the simulated clock). The writer is the `tensorboard` package's own
(an optional extra: `pip install 'fstq-sim[tensorboard]'`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator.errors import SimulatorError

EXTRA_HINT = "pip install 'fstq-sim[tensorboard]' (or pip install tensorboard)"
# rounds.csv columns that are not a quantity of the round (its number, its clock, an id)
NOT_METRICS = ("round", "start_s", "end_s", "slowest_client", "slowest_phase")


def _writer_classes() -> tuple[Any, Any, Any]:
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise SimulatorError(
            f"--tensorboard: the tensorboard package is not installed. Fix: {EXTRA_HINT}, or "
            "drop --tensorboard"
        ) from None
    return Event, Summary, EventFileWriter


def check_folder(folder: Path) -> Path:
    """The --tensorboard folder, checked before a run starts: the writer is installed and no
    file stands where a folder must be."""
    _writer_classes()
    blocking = next((p for p in (folder, *folder.parents) if p.is_file()), None)
    if blocking is not None:
        raise SimulatorError(f"--tensorboard {folder}: {blocking} is a file; name a folder")
    return folder


class ArmBoard:
    """The event file of one arm; `write` takes the rows the recorder has just appended."""

    def __init__(self, folder: Path) -> None:
        self._event, self._summary, writer = _writer_classes()
        self._writer = writer(str(check_folder(folder)))

    def _scalar(self, tag: str, round_number: int, time_s: float, value: float) -> None:
        for name, step in ((tag, round_number), (f"{tag}_vs_sim_s", round(time_s))):
            summary = self._summary(value=[self._summary.Value(tag=name, simple_value=value)])
            self._writer.add_event(self._event(wall_time=time_s, step=step, summary=summary))

    def write(self, rows: dict[str, Iterable[Any]]) -> None:
        """Scalars of the evaluation rows and round rows (recorder NamedTuples) of one append."""
        for row in rows.get("evals", ()):
            view = f"/{row.group}" if row.group else ""
            self._scalar(f"eval{view}/{row.metric}", row.round, row.time_s, float(row.value))
        for row in rows.get("rounds", ()):
            for column, value in row._asdict().items():
                if column not in NOT_METRICS and isinstance(value, int | float):
                    self._scalar(f"round/{column}", row.round, row.end_s, float(value))
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
