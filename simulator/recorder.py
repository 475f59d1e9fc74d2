"""The run directory: one folder per method arm, plain CSV/JSON, resumable.

Layout of `OUT/<arm>/`:
    rounds.csv      one row per round (per server update under FedBuff)
    clients.csv     one row per client-round (phases with simulated start/end times, training
                    loss at the first and last local step, tokens trained, counted FLOPs)
    evals.csv       one row per evaluated metric (simulated time, cumulative uplink bytes), and
                    per view (`group`: a group or label value, clients:mean/worst10/std); the
                    overall row has an empty group
    summary.json    totals and time/bytes-to-target, written when the arm finishes
    manifest.json   schema version, package versions, seed, mode, host start/end times
    scenario.json   the resolved scenario
    checkpoint.json after every round: CSV byte offsets + engine and trainer state
  real training also:
    partition.csv   samples (and labels or groups) per client
    state-r<k>.npz  the arrays to resume from after round k (the checkpoint records its sha256)
    adapter/        the final adapter (PEFT save_pretrained)
    generations.json  the greedy answers of every generating round ({"rounds": [...]})
    client_evals.csv  per-client evaluation: round, client, metric, value
and in OUT/ itself: fstq-sim-run.json (the marker, written first), .fstq-sim.lock (the lock),
scenario.json (resolved), scenario.toml (as given), run.json (--arms).

This module is the only writer of a run directory: every file goes through a unique temporary
name and a rename, so a reader (or a crash) never sees half a file. A folder is a run directory
by its marker, never by a file name a user may have; one process at a time writes it (an flock
that the OS releases when the process dies, so a killed run can resume); a run deletes nothing
it did not write.

Rows are appended and flushed every round, then the checkpoint is replaced atomically
(written, fsynced, renamed). Resuming truncates each CSV to the offsets in the checkpoint, so
a crash between the two leaves no half round, and a resumed run writes exactly the bytes an
uninterrupted one does.
Floats are written with repr(), which round-trips exactly and is platform-independent.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from filelock import FileLock, Timeout

from simulator.errors import RunDirError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4  # 4: evals.csv `group`, clients.csv training columns
RUN_FILE = "run.json"  # what `run` was asked for beyond the scenario (the --arms selection)
MARKER = "fstq-sim-run.json"  # makes a folder a run directory; written before anything else
MARKER_FORMAT = "fstq-sim run directory"
LOCK_FILE = ".fstq-sim.lock"
REPLACED = ".replaced-"  # `.OUT.replaced-PID`: an old run directory a --force start set aside
DISCARDED = ".discard-"  # `.OUT.discard-PID`: one the started new run is deleting
RUN_DIR_FILES = frozenset({MARKER, LOCK_FILE, "scenario.json", "scenario.toml", RUN_FILE})
ARM_FILES = frozenset(
    {
        "rounds.csv",
        "clients.csv",
        "evals.csv",
        "summary.json",
        "manifest.json",
        "scenario.json",
        "checkpoint.json",
        "partition.csv",
        "masks.csv",
        "generations.json",
        "client_evals.csv",
        "adapter",
    }
)
# the file `fstq-sim compare --out` writes first into its report folder, so a report written
# inside a run directory is known as fstq-sim's own (and --force may replace it with the run)
REPORT_MARKER = "fstq-sim-report.json"
# what `fstq-sim plot RUN` writes into a run or arm folder
PLOT_FILES = frozenset(
    f"{kind}.png"
    for kind in (
        "quality_vs_time",
        "quality_bytes",
        "round_cdf",
        "timeline",
        "bits",
        "quality_by_group",
        "quality_by_client",
    )
)
LOWER_IS_BETTER = ("loss", "nll", "perplexity")  # evals.csv metrics that fall as models improve


def lower_is_better(metric: str) -> bool:
    """Direction of an evals.csv metric, by name (losses and perplexities fall, the rest rise)."""
    return metric.endswith(LOWER_IS_BETTER)


class RoundRow(NamedTuple):
    """A rounds.csv row: one round (one server update under FedBuff)."""

    round: int
    start_s: float
    end_s: float
    duration_s: float
    selected: int
    received: int
    dropped: int
    interrupted: int
    corrupt: int
    lost: int
    late: int
    cancelled: int
    stale: int
    uplink_bytes: int
    downlink_bytes: int
    energy_j_mean: float
    energy_j_max: float
    slowest_client: int | str  # "" when nobody worked
    slowest_phase: str


class ClientRow(NamedTuple):
    """A clients.csv row: one client-round, its phases' simulated start and end times (None:
    the phase never happened)."""

    round: int
    client: int
    device: str
    status: str
    phase: str  # where a failed or stopped client-round ended
    download_start_s: float | None
    download_end_s: float | None
    compute_start_s: float | None
    compute_end_s: float | None
    upload_start_s: float | None
    upload_end_s: float | None
    downlink_bytes: int
    uplink_bytes: int
    energy_j: float
    version: int | None  # FedBuff: the global version it trained on
    staleness: int | None
    train_loss_first: float | None  # real training: the loss of the first and last local step
    train_loss_last: float | None
    tokens_trained: int | None  # non-padding tokens of the local steps
    flop: float | None  # counted FLOPs of the local round (what its compute time comes from)


class EvalRow(NamedTuple):
    """An evals.csv row: one metric of the global state after a round."""

    round: int
    time_s: float
    uplink_bytes_cum: int
    metric: str
    value: float
    source: str
    group: str = ""  # the view ("" for the overall value; older evals.csv lack the column)


ROUND_COLUMNS = RoundRow._fields
CLIENT_COLUMNS = ClientRow._fields
EVAL_COLUMNS = EvalRow._fields
TABLES = {"rounds": ROUND_COLUMNS, "clients": CLIENT_COLUMNS, "evals": EVAL_COLUMNS}

_PACKAGES = (
    "fstq-sim",
    "simpy",
    "numpy",
    "pandas",
    "pydantic",
    "torch",
    "transformers",
    "peft",
    "rouge-score",
)


def _temporary(path: Path) -> Path:
    """A temporary name beside `path` that no other writer can share."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


@contextmanager
def _replaced_atomically(path: Path) -> Iterator[Path]:
    """Yield a unique temporary path to fill; rename it onto `path` if the block succeeds,
    remove it if not."""
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and rename, so readers never see half a file."""
    with _replaced_atomically(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_csv_atomic(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A whole CSV table (header, rows; the csv module's default dialect), written atomically."""
    with _replaced_atomically(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)


def write_run_files(
    out: Path, resolved: dict[str, Any], arms: list[str] | None, scenario_file: Path | None
) -> None:
    """A run directory's own files: the resolved scenario, the arm selection and the scenario
    file as given."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "scenario.json", resolved)
    write_json_atomic(out / RUN_FILE, {"arms": arms})
    if scenario_file is not None:
        with _replaced_atomically(out / "scenario.toml") as tmp:
            shutil.copyfile(scenario_file, tmp)


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _ours_in_arm(entry: Path) -> bool:
    name = entry.name
    return (
        name in ARM_FILES
        or name in PLOT_FILES
        or _is_temporary(name)
        or (name.startswith("state-r") and name.endswith(".npz"))
    )


def foreign_entries(out: Path) -> list[Path]:
    """What a run directory holds that fstq-sim did not write (a run never deletes those)."""
    found = []
    for entry in sorted(out.iterdir()):
        if entry.name in RUN_DIR_FILES or entry.name in PLOT_FILES or _is_temporary(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink() and (entry / "rounds.csv").is_file():
            found += [p for p in sorted(entry.iterdir()) if not _ours_in_arm(p)]
        elif not (entry.is_dir() and not entry.is_symlink() and (entry / REPORT_MARKER).is_file()):
            found.append(entry)
    return found


def is_empty(folder: Path) -> bool:
    """Whether a folder holds nothing but temporaries (another start may be writing its
    marker)."""
    return all(_is_temporary(p.name) for p in folder.iterdir())


def is_arm_folder(path: Path) -> bool:
    """Whether `path` is one arm's folder of a run directory."""
    return (path / "manifest.json").is_file()


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a run directory: it holds the marker, or, written before the marker
    existed, exactly the old layout (scenario.json, run.json, arm folders and nothing else)."""
    marker = path / MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("format") == MARKER_FORMAT
        except (ValueError, UnicodeDecodeError, AttributeError):
            return False
    return (
        path.is_dir()
        and (path / "scenario.json").is_file()
        and (path / RUN_FILE).is_file()
        and any(is_arm_folder(p) for p in path.iterdir())
        and not foreign_entries(path)
    )


def holds_results(out: Path) -> bool:
    """Whether any arm of a run directory has started (a checkpoint or a summary)."""
    started = ("checkpoint.json", "summary.json")
    return any((arm / name).exists() for arm in out.iterdir() for name in started)


def _acquire(out: Path) -> FileLock:
    """Take `out`'s lock without waiting, or say which folder another process holds."""
    lock = FileLock(out / LOCK_FILE, timeout=0, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise RunDirError(
            f"{out}: in use by another fstq-sim process (it holds {out / LOCK_FILE}); wait for "
            f"it to finish, or stop it and continue with: fstq-sim run --resume {out}"
        ) from None
    return lock


_HELD: dict[Path, FileLock] = {}  # the run directories this process holds the lock of


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold `out`'s lock while the block runs (re-entrant within a process); creates the folder
    and its marker first when they are missing (a folder written before the marker gets it)."""
    key = out.resolve()
    if key in _HELD:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        marker = {"format": MARKER_FORMAT, "schema_version": SCHEMA_VERSION, "created": _now()}
        write_json_atomic(out / MARKER, marker)
    _HELD[key] = _acquire(out)
    try:
        yield
    finally:
        _HELD.pop(key).release()


def _asides(out: Path, kind: str) -> list[Path]:
    return sorted(out.parent.glob(f".{glob.escape(out.name)}{kind}*"))


def recover_replaced(out: Path) -> None:
    """Deal with what an interrupted --force start left beside `out`: an old run directory set
    aside before the new run started is put back (if `out` holds no results; otherwise it is
    named, untouched); one the started new run was deleting is deleted."""
    own = f"{REPLACED}{os.getpid()}"
    for aside in _asides(out, DISCARDED) + _asides(out, REPLACED):
        if aside.name.endswith(own):
            continue
        try:
            lock = _acquire(aside)
        except RunDirError:
            raise RunDirError(
                f"{aside}: set aside by a --force start of {out} that is still running; wait "
                "for it to finish"
            ) from None
        try:
            if DISCARDED in aside.name:
                shutil.rmtree(aside)
            elif not out.exists() or (
                is_run_dir(out) and not holds_results(out) and not foreign_entries(out)
            ):
                shutil.rmtree(out, ignore_errors=True)
                os.replace(aside, out)
                log.warning(
                    "%s: put back from %s, where a --force start that was interrupted had set "
                    "it aside",
                    out,
                    aside.name,
                )
            else:
                raise RunDirError(
                    f"{aside}: an earlier run directory of {out}, set aside by a --force start "
                    f"that was interrupted; {out} now holds other results, so both are left as "
                    f"they are: rename it (mv {aside} <new name>) or delete it"
                )
        finally:
            lock.release()


@contextmanager
def replacing(out: Path) -> Iterator[Callable[[], None]]:
    """Take `out` for a new run, under its lock for the run's life. A run directory with results
    there (its lock taken first) is set aside; if the new run fails before it has started (the
    callable yielded marks that), what this start wrote is removed and the old one put back;
    once it has started, the old one is deleted."""
    created = not out.exists()
    aside: Path | None = None
    old_lock: FileLock | None = None
    if not created and holds_results(out):
        old_lock = _acquire(out)
        aside = out.with_name(f".{out.name}{REPLACED}{os.getpid()}")
        os.replace(out, aside)
    started = False

    def start() -> None:
        nonlocal started, old_lock
        if not started and aside is not None and old_lock is not None:
            doomed = out.with_name(f".{out.name}{DISCARDED}{os.getpid()}")
            os.replace(aside, doomed)
            old_lock.release()
            old_lock = None
            shutil.rmtree(doomed)
        started = True

    try:
        with run_lock(out):
            try:
                yield start
            except BaseException:
                if not started and (created or aside is not None):
                    shutil.rmtree(out, ignore_errors=True)
                raise
    except BaseException:
        if not started and aside is not None:
            try:
                os.replace(aside, out)
            except OSError:
                log.warning("%s: kept at %s (%s is in use)", out, aside, out)
        raise
    finally:
        if old_lock is not None:
            old_lock.release()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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

    def __init__(
        self,
        folder: Path,
        manifest: dict[str, Any],
        resume: bool,
        scenario: dict[str, Any] | None = None,
    ) -> None:
        self.folder = folder
        self.checkpoint_path = folder / "checkpoint.json"
        self.checkpoint: dict[str, Any] | None = None
        self._arrays: str | None = None  # the latest arrays file written or read
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
        if scenario is not None and self.checkpoint is None:  # a resumed arm keeps its record
            write_json_atomic(folder / "scenario.json", scenario)

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

    def write_table(self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """A whole table written once (e.g. partition.csv), atomically."""
        write_csv_atomic(self.folder / name, columns, rows)

    def write_json(self, name: str, data: Any) -> None:
        """A JSON file of the arm (e.g. generations.json), atomically."""
        write_json_atomic(self.folder / name, data)

    def read_json(self, name: str) -> Any:
        """A JSON file this arm wrote (e.g. generations.json), or None when absent."""
        path = self.folder / name
        return read_json(path) if path.exists() else None

    def read_rows(self, name: str) -> list[dict[str, str]]:
        """The rows of a whole table this arm wrote (write_table), or [] when absent."""
        path = self.folder / name
        if not path.exists():
            return []
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def write_folder(self, name: str, save: Callable[[Path], None]) -> None:
        """A folder that `save` fills (e.g. PEFT's save_pretrained), put in place by a rename
        once complete; an older one of that name is replaced."""
        final = self.folder / name
        with _replaced_atomically(final) as tmp:
            save(tmp)
            shutil.rmtree(final, ignore_errors=True)

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> dict[str, str]:
        """Named arrays as `<name>.npz` (fsynced, renamed); returns the reference a checkpoint
        keeps (file and sha256). Arrays files older than the previous one are deleted: no
        checkpoint can still point at them."""
        path = self.folder / f"{name}.npz"
        with _replaced_atomically(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        self._prune_arrays({path.name, self._arrays})
        self._arrays = path.name
        return {"arrays": path.name, "sha256": _sha256(path)}

    def read_arrays(self, reference: dict[str, str]) -> dict[str, np.ndarray]:
        """The arrays a checkpoint's reference points at, after checking their hash."""
        path = self.folder / reference["arrays"]
        if not path.exists() or _sha256(path) != reference["sha256"]:
            raise RunDirError(
                f"{path}: missing or not the state the checkpoint recorded; delete this "
                "arm's folder to rerun the arm"
            )
        self._arrays = path.name
        with np.load(path) as loaded:
            return {name: loaded[name] for name in loaded.files}

    def _prune_arrays(self, keep: set[str | None]) -> None:
        for path in self.folder.glob("state-r*.npz"):  # only the arrays files it writes
            if path.name not in keep:
                path.unlink()

    def finish(self, summary: dict[str, Any]) -> None:
        """Close the tables, keep only the last arrays file, write the summary and stamp the
        manifest's end time."""
        self.close()
        self._prune_arrays({self._arrays})
        write_json_atomic(self.folder / "summary.json", summary)
        self.manifest["host_end"] = _now()
        write_json_atomic(self.folder / "manifest.json", self.manifest)

    def close(self) -> None:
        """Close the CSV files (rows already written stay on disk)."""
        for fh in self._files.values():
            fh.close()
        self._files = {}
