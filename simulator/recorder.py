"""The run directory: one folder per method arm, plain CSV/JSON, resumable.

Layout of `OUT/<arm>/`:
    rounds.csv      one row per round (per server update under FedBuff)
    clients.csv     one row per client-round (phases with simulated start/end times)
    evals.csv       one row per evaluated metric (simulated time, cumulative uplink bytes)
    summary.json    totals and time/bytes-to-target, written when the arm finishes
    manifest.json   schema version, package versions, seed, mode, host start/end times
    scenario.json   the resolved scenario
    checkpoint.json after every round: CSV byte offsets + engine and trainer state

Rows are appended and flushed every round, then the checkpoint is replaced atomically
(written, fsynced, renamed). Resuming truncates each CSV to the offsets in the checkpoint, so
a crash between the two leaves no half round, and a resumed run writes exactly the bytes an
uninterrupted one does.
Floats are written with repr(), which round-trips exactly and is platform-independent.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from simulator.errors import RunDirError

SCHEMA_VERSION = 3
LOWER_IS_BETTER = ("loss", "nll", "perplexity")  # evals.csv metrics that fall as models improve


def lower_is_better(metric: str) -> bool:
    """Direction of an evals.csv metric, by name (losses and perplexities fall, the rest rise)."""
    return metric.endswith(LOWER_IS_BETTER)


ROUND_COLUMNS = (
    "round",
    "start_s",
    "end_s",
    "duration_s",
    "selected",
    "received",
    "dropped",
    "interrupted",
    "corrupt",
    "lost",
    "late",
    "cancelled",
    "stale",
    "uplink_bytes",
    "downlink_bytes",
    "energy_j_mean",
    "energy_j_max",
    "slowest_client",
    "slowest_phase",
)
CLIENT_COLUMNS = (
    "round",
    "client",
    "device",
    "status",
    "phase",
    "download_start_s",
    "download_end_s",
    "compute_start_s",
    "compute_end_s",
    "upload_start_s",
    "upload_end_s",
    "downlink_bytes",
    "uplink_bytes",
    "energy_j",
    "version",
    "staleness",
)
EVAL_COLUMNS = ("round", "time_s", "uplink_bytes_cum", "metric", "value", "source")
TABLES = {"rounds": ROUND_COLUMNS, "clients": CLIENT_COLUMNS, "evals": EVAL_COLUMNS}

_PACKAGES = ("fstq-sim", "simpy", "numpy", "pandas", "pydantic", "torch", "transformers", "peft")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Load a JSON file of a run directory, with a clear error when it is damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; is this a fstq-sim run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"{path}: damaged JSON ({exc}); delete the arm folder to rerun it"
        ) from None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results (absent ones are skipped)."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ArmRecorder:
    """Appends one arm's rows round by round and keeps its checkpoint."""

    def __init__(self, folder: Path, manifest: dict[str, Any], resume: bool) -> None:
        self.folder = folder
        self.checkpoint_path = folder / "checkpoint.json"
        self.checkpoint: dict[str, Any] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        if resume and self.checkpoint_path.exists():
            self.checkpoint = read_json(self.checkpoint_path)
            self._check_schema(self.checkpoint)
        self._open_tables()
        self.manifest = dict(manifest, schema_version=SCHEMA_VERSION)
        previous = folder / "manifest.json"
        if self.checkpoint is not None and previous.exists():
            self.manifest["host_start"] = read_json(previous).get("host_start", _now())
            self.manifest["resumed_at"] = [*read_json(previous).get("resumed_at", []), _now()]
        else:
            self.manifest["host_start"] = _now()
        self.manifest.update(packages=package_versions(), host=platform.node(), argv=sys.argv)
        write_json_atomic(folder / "manifest.json", self.manifest)

    def _check_schema(self, data: dict[str, Any]) -> None:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RunDirError(
                f"{self.checkpoint_path}: schema version {version}, this fstq-sim writes "
                f"{SCHEMA_VERSION}; resume it with the version that started it"
            )

    def _open_tables(self) -> None:
        self._files = {}
        self._writers = {}
        for name, columns in TABLES.items():
            path = self.folder / f"{name}.csv"
            if self.checkpoint is not None:
                offset = self.checkpoint["offsets"][name]
                if not path.exists() or path.stat().st_size < offset:
                    raise RunDirError(
                        f"{path}: shorter than its checkpoint says ({offset} bytes); the run "
                        "directory is damaged: delete this arm's folder to rerun the arm"
                    )
                os.truncate(path, offset)
                fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
            else:
                fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
                csv.writer(fh, lineterminator="\n").writerow(columns)
            self._files[name] = fh
            self._writers[name] = csv.writer(fh, lineterminator="\n")

    def append(self, rows: dict[str, Iterable[Sequence[Any]]], state: dict[str, Any]) -> None:
        """Append rows (by table name), make them durable, then move the checkpoint past them."""
        for name, table_rows in rows.items():
            self._writers[name].writerows(table_rows)
        offsets = {}
        for name, fh in self._files.items():
            fh.flush()
            offsets[name] = fh.tell()
        self.checkpoint = {"schema_version": SCHEMA_VERSION, "offsets": offsets, "state": state}
        write_json_atomic(self.checkpoint_path, self.checkpoint)

    def finish(self, summary: dict[str, Any]) -> None:
        """Close the tables, write the summary and stamp the manifest's end time."""
        self.close()
        write_json_atomic(self.folder / "summary.json", summary)
        self.manifest["host_end"] = _now()
        write_json_atomic(self.folder / "manifest.json", self.manifest)

    def close(self) -> None:
        """Close the CSV files (rows already written stay on disk)."""
        for fh in self._files.values():
            fh.close()
        self._files = {}
