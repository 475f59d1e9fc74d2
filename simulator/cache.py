"""Train once, replay every network: an exact, content-addressed store of client-round results
and evaluations.

A client-round's result (its encoded message, sample count, statistics and the state the client
keeps) is a pure function of what went into it: the global state the client decoded, the
client, its seed coordinate, the arm's method (codec, token policy, their options, freeze_a,
local steps), the run's training (model weights, LoRA, data, tokens, partition, local settings,
thread count, the code and package versions that do the math) and, for a link-aware codec, the
byte budget it was given. An evaluation is a pure function of the global state and the
evaluation settings. `update_key` and `eval_key` hash a canonical encoding of exactly those, so
a synchronous round under another network, deadline or straggler tail finds every client-round
it trains the same already computed, and anything that could change a result changes the key.

Entries live in a folder (default: the user cache directory, `--cache DIR`, `--no-cache`): raw
message bytes, the client's arrays as .npz (no pickle) and a JSON record written last, each
through a unique temporary name and a rename, so concurrent writers (process or Ray workers,
parallel sweeps) never expose half an entry. The JSON record holds the sha256 of every payload
file and its own sha256 (of everything else it holds, canonically encoded), so an entry is
verified as a whole: a read that finds any part changed, missing or malformed (a payload, an
evaluation's accuracy, a sample count, a renamed key) discards the entry, recomputes it and counts
it. The folder is bounded by a size cap, least recently used first out (a hit touches its record).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import SimulatorError, located

CACHE_VERSION = 2  # bump when an entry's layout changes (2: records carry their own sha256)
DEFAULT_CAP_BYTES = 10 * 1024**3
_EVICT_EVERY = 64  # writes between two size checks


def cache_root() -> Path:
    """fstq-sim's folder in the user's cache: $FSTQ_SIM_CACHE, else $XDG_CACHE_HOME/fstq-sim or
    ~/.cache/fstq-sim (converted models live under models/)."""
    if os.environ.get("FSTQ_SIM_CACHE"):
        return Path(os.environ["FSTQ_SIM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fstq-sim"


def default_replay_dir() -> Path:
    """Where client-round and evaluation entries go unless --cache says: $FSTQ_SIM_REPLAY_CACHE,
    else replay/ in cache_root()."""
    if os.environ.get("FSTQ_SIM_REPLAY_CACHE"):
        return Path(os.environ["FSTQ_SIM_REPLAY_CACHE"])
    return cache_root() / "replay"


def canonical_hash(data: Any) -> str:
    """sha256 of a canonical JSON encoding (sorted keys, no whitespace, floats by repr)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def array_hash(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def arrays_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CacheError(SimulatorError):
    """The replay cache's folder cannot be used (a file, not writable)."""


class _Damaged(ValueError):
    """An entry whose record or payloads are not what was stored."""


@dataclass
class CacheStats:
    """What a cache did: entries found, computed, found damaged, and the host seconds the hits
    saved (what computing them took when they were stored)."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    saved_host_s: float = 0.0
    evicted: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def since(self, before: CacheStats) -> dict[str, Any]:
        """The difference to an earlier snapshot, as JSON."""
        return {
            "hits": self.hits - before.hits,
            "misses": self.misses - before.misses,
            "corrupt": self.corrupt - before.corrupt,
            "saved_host_s": round(self.saved_host_s - before.saved_host_s, 3),
            "evicted": self.evicted - before.evicted,
        }

    def snapshot(self) -> CacheStats:
        """A copy to diff against later."""
        return CacheStats(**{**asdict(self), "by_kind": Counter(self.by_kind)})


class ReplayCache:
    """A content-addressed folder of entries: `get` / `put` by key, per kind ("update",
    "eval")."""

    def __init__(self, root: Path, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        """Open (create) the folder; CacheError before anything runs when it is not a writable
        folder, rather than a failure at the first entry written mid-run."""
        self.root = Path(root)
        self.cap_bytes = cap_bytes
        self.stats = CacheStats()
        self._writes = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise CacheError(
                located(
                    self.root,
                    None,
                    f"the replay cache must be a writable folder ({exc.strerror or exc})",
                    "give --cache a writable folder (or unset $FSTQ_SIM_REPLAY_CACHE), or "
                    "compute everything with --no-cache",
                )
            ) from None

    def _record(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.json"

    def get(self, kind: str, key: str) -> tuple[dict[str, Any], dict[str, bytes]] | None:
        """The entry's metadata and payloads (verified), or None: absent, or damaged (then
        discarded and counted)."""
        record = self._record(kind, key)
        try:
            entry, payloads = _read_entry(record, kind, key)
        except FileNotFoundError:
            if record.exists():  # the record without a payload: damaged
                self._discard(record, key)
            self.stats.misses += 1
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            self._discard(record, key)  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            self.stats.misses += 1
            return None
        os.utime(record)  # least recently used goes first
        self.stats.hits += 1
        self.stats.by_kind[kind] += 1
        self.stats.saved_host_s += float(entry["host_s"])
        return entry["meta"], payloads

    def _discard(self, record: Path, key: str) -> None:
        self.stats.corrupt += 1
        for path in record.parent.glob(f"{key}.*"):
            path.unlink(missing_ok=True)

    def put(
        self, kind: str, key: str, meta: dict[str, Any], payloads: dict[str, bytes], host_s: float
    ) -> None:
        """Store an entry: payload files first, the JSON record (with their hashes) last, each
        under a unique temporary name renamed into place."""
        record = self._record(kind, key)
        record.parent.mkdir(parents=True, exist_ok=True)
        for name, data in payloads.items():
            _write_atomic(record.parent / f"{key}.{name}", data)
        entry = {
            "version": CACHE_VERSION,
            "key": key,
            "kind": kind,
            "host_s": float(host_s),
            "payloads": {name: _sha256(data) for name, data in payloads.items()},
            "meta": meta,
        }
        entry[_SELF] = canonical_hash(entry)
        _write_atomic(record, json.dumps(entry, indent=1).encode("utf-8"))
        self._writes += 1
        if self._writes % _EVICT_EVERY == 0:
            self.evict()

    def evict(self) -> None:
        """Delete the least recently used entries until the folder is within its cap."""
        entries = []
        total = 0
        for record in self.root.glob("*/*/*.json"):
            key = record.stem
            try:
                files = [p for p in record.parent.glob(f"{key}.*")]
                size = sum(p.stat().st_size for p in files)
                used = record.stat().st_mtime
            except FileNotFoundError:
                continue  # another process evicted it meanwhile
            entries.append((used, size, files))
            total += size
        entries.sort(key=lambda entry: entry[0])
        for _, size, files in entries:
            if total <= self.cap_bytes:
                break
            files.sort(key=lambda p: p.suffix == ".json", reverse=True)  # the record first
            for path in files:
                path.unlink(missing_ok=True)
            total -= size
            self.stats.evicted += 1


_SELF = "sha256"  # the record's own hash: of every other field, canonically encoded


def _read_entry(record: Path, kind: str, key: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The record and its payloads, verified as a whole; _Damaged (or the error that reading a
    malformed record raises) when any part differs from what `put` stored."""
    entry = json.loads(record.read_text(encoding="utf-8"))
    if not isinstance(entry, dict) or entry.pop(_SELF, None) != canonical_hash(entry):
        raise _Damaged("the record's sha256 does not match its content")
    if (entry["version"], entry["kind"], entry["key"]) != (CACHE_VERSION, kind, key):
        raise _Damaged("not this key's entry")
    payloads = {}
    for name, sha in entry["payloads"].items():
        data = (record.parent / f"{key}.{name}").read_bytes()
        if _sha256(data) != sha:
            raise _Damaged(f"{name}: sha256 mismatch")
        payloads[name] = data
    return entry, payloads


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
