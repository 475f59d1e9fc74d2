"""The replay cache's store (simulator/cache.py): verified reads, recovery from damaged entries
(any part of an entry), an unusable folder refused up front, concurrent writers,
least-recently-used eviction, canonical hashes."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import numpy as np
import pytest

from simulator.cache import CacheError, ReplayCache, array_hash, canonical_hash

KEY = "ab" + "0" * 62


def _put(cache: ReplayCache, key: str = KEY, data: bytes = b"message") -> None:
    cache.put("update", key, {"num_samples": 3}, {"msg": data}, host_s=1.5)


def test_an_entry_reads_back_exactly_and_counts_its_saved_seconds(tmp_path):
    cache = ReplayCache(tmp_path)
    assert cache.get("update", KEY) is None
    _put(cache)
    meta, payloads = cache.get("update", KEY)
    assert meta == {"num_samples": 3} and payloads == {"msg": b"message"}
    assert (cache.stats.hits, cache.stats.misses, cache.stats.saved_host_s) == (1, 1, 1.5)
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written left behind


def test_a_damaged_entry_is_discarded_counted_and_recomputed(tmp_path):
    cache = ReplayCache(tmp_path)
    _put(cache)
    (payload,) = tmp_path.rglob(f"{KEY}.msg")
    payload.write_bytes(b"messagf")  # one flipped byte
    assert cache.get("update", KEY) is None
    assert cache.stats.corrupt == 1 and not list(tmp_path.rglob(f"{KEY}.*"))
    _put(cache)
    (payload,) = tmp_path.rglob(f"{KEY}.msg")
    payload.write_bytes(b"mess")  # truncated
    assert cache.get("update", KEY) is None and cache.stats.corrupt == 2
    _put(cache)
    (record,) = tmp_path.rglob(f"{KEY}.json")
    record.write_text("{not json")
    assert cache.get("update", KEY) is None and cache.stats.corrupt == 3
    _put(cache)
    payload.unlink()  # the record without its payload
    assert cache.get("update", KEY) is None and cache.stats.corrupt == 4
    _put(cache)
    assert cache.get("update", KEY)[1] == {"msg": b"message"}


def _rename(record: dict, old: str, new: str) -> None:
    record["meta"][new] = record["meta"].pop(old)


RECORD_EDITS = {
    "a sample count": lambda r: r["meta"].update(num_samples=4),
    "a renamed key": lambda r: _rename(r, "num_samples", "samples"),
    "an added key": lambda r: r["meta"].update(extra=1),
    "the saved host seconds": lambda r: r.update(host_s=99.0),
    "a payload's listed hash": lambda r: r["payloads"].update(msg="0" * 64),
    "its own hash": lambda r: r.update(sha256="0" * 64),
    "no own hash": lambda r: r.pop("sha256"),
    "the version": lambda r: r.update(version=1),
    "the kind": lambda r: r.update(kind="eval"),
    "not an object": lambda r: r.clear(),
}


@pytest.mark.parametrize("edit", sorted(RECORD_EDITS))
def test_an_entry_is_verified_as_a_whole_whatever_part_is_damaged(tmp_path, edit):
    cache = ReplayCache(tmp_path)
    _put(cache)
    (path,) = tmp_path.rglob(f"{KEY}.json")
    record = json.loads(path.read_text())
    RECORD_EDITS[edit](record)
    path.write_text(json.dumps(record if record else [], indent=1))
    assert cache.get("update", KEY) is None
    assert (cache.stats.corrupt, cache.stats.misses, cache.stats.hits) == (1, 1, 0)
    assert not list(tmp_path.rglob(f"{KEY}.*"))  # discarded, so the next run recomputes it
    _put(cache)
    assert cache.get("update", KEY) == ({"num_samples": 3}, {"msg": b"message"})
    assert cache.stats.saved_host_s == 1.5


def test_a_record_reindented_but_unchanged_is_still_a_hit(tmp_path):
    cache = ReplayCache(tmp_path)
    _put(cache)
    (path,) = tmp_path.rglob(f"{KEY}.json")
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4, sort_keys=True))
    assert cache.get("update", KEY) == ({"num_samples": 3}, {"msg": b"message"})
    assert cache.stats.corrupt == 0


def test_a_cache_path_that_is_not_a_writable_folder_is_refused_when_opened(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for path in (file, file / "sub"):
        with pytest.raises(CacheError, match=r"must be a writable folder.*Fix: give --cache"):
            ReplayCache(path)
    assert file.read_text() == "mine"
    ReplayCache(tmp_path / "new" / "cache")  # a folder that does not exist yet is created
    assert (tmp_path / "new" / "cache").is_dir()
    assert not list((tmp_path / "new").rglob("*.*"))  # the write probe leaves nothing


def _writer(root: str, seed: int) -> None:
    cache = ReplayCache(root)
    gen = np.random.default_rng(seed)
    for i in range(40):
        key = f"{i % 8:02x}" + "1" * 62
        cache.put("update", key, {"i": i % 8}, {"msg": bytes([i % 8]) * 50_000}, 0.0)
        entry = cache.get("update", key)
        assert entry is None or entry[1]["msg"] == bytes([i % 8]) * 50_000
        time.sleep(gen.random() / 1000)


def test_concurrent_writers_never_expose_half_an_entry(tmp_path):
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_writer, args=(str(tmp_path), s)) for s in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    cache = ReplayCache(tmp_path)
    for i in range(8):
        meta, payloads = cache.get("update", f"{i:02x}" + "1" * 62)
        assert meta == {"i": i} and payloads["msg"] == bytes([i]) * 50_000
    assert cache.stats.corrupt == 0 and not list(tmp_path.rglob("*.tmp"))


def test_eviction_drops_the_least_recently_used_first(tmp_path):
    cache = ReplayCache(tmp_path, cap_bytes=3 * 10_000 + 3 * 600)
    keys = [f"{i:02x}" + "2" * 62 for i in range(4)]
    for age, key in enumerate(keys):
        _put(cache, key, bytes(10_000))
        record = next(tmp_path.rglob(f"{key}.json"))
        os.utime(record, (1_000_000 + age, 1_000_000 + age))  # 0 oldest
    assert cache.get("update", keys[0]) is not None  # used now: the newest
    cache.evict()
    assert cache.stats.evicted == 1
    assert cache.get("update", keys[1]) is None  # the least recently used went
    assert all(cache.get("update", key) is not None for key in (keys[0], keys[2], keys[3]))


def test_hashes_are_canonical_and_see_dtype_shape_and_bytes():
    assert canonical_hash({"a": 1, "b": [0.1]}) == canonical_hash({"b": [0.1], "a": 1})
    assert canonical_hash({"a": 1.0}) != canonical_hash({"a": 1})
    x = np.arange(6, dtype=np.float32)
    assert array_hash(x) == array_hash(x.copy())
    assert array_hash(x) != array_hash(x.reshape(2, 3))
    assert array_hash(x) != array_hash(x.astype(np.float64))
    y = x.copy()
    y[3] = np.nextafter(y[3], np.float32(9))
    assert array_hash(x) != array_hash(y)
