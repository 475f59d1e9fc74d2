"""The run directory recorder alone: fresh tables, durable appends, checkpoint offsets, exact
resume (truncation), damaged or incompatible folders, the summary and the atomic JSON writes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT

from simulator.errors import RunDirError
from simulator.recorder import (
    CLIENT_COLUMNS,
    EVAL_COLUMNS,
    MARKER,
    ROUND_COLUMNS,
    SCHEMA_VERSION,
    TABLES,
    ArmRecorder,
    foreign_entries,
    is_run_dir,
    lower_is_better,
    package_versions,
    read_json,
    run_lock,
    write_json_atomic,
)

ROOT = str(PROJECT_ROOT)

MANIFEST = {"seed": 7, "mode": "surrogate", "method": "dense"}


def _round_row(r: int) -> list:
    """A rounds.csv row of the right width whose values depend on the round."""
    return [r, 4.0 * (r - 1), 4.0 * r, *range(len(ROUND_COLUMNS) - 3)]


def _rows(r: int) -> dict[str, list[list]]:
    """One round's rows for every table."""
    clients = [
        [r, c, "laptop", "ok", "upload", *[0.5 * c] * (len(CLIENT_COLUMNS) - 5)] for c in (0, 1)
    ]
    evals = [[r, 4.0 * r, 1_000_000 * r, "accuracy", 0.1 * r, "surrogate"]]
    return {"rounds": [_round_row(r)], "clients": clients, "evals": evals}


def _read(folder: Path, table: str) -> list[list[str]]:
    with open(folder / f"{table}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / f"{name}.csv").read_bytes() for name in TABLES}


def test_a_fresh_recorder_writes_one_header_per_table_and_a_manifest(tmp_path):
    folder = tmp_path / "arm"  # created by the recorder
    recorder = ArmRecorder(folder, MANIFEST, resume=False)
    recorder.close()
    for name, columns in (("rounds", ROUND_COLUMNS), ("clients", CLIENT_COLUMNS)):
        assert (folder / f"{name}.csv").read_text(encoding="utf-8") == ",".join(columns) + "\n"
    assert _read(folder, "evals") == [list(EVAL_COLUMNS)]
    manifest = read_json(folder / "manifest.json")
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["seed"] == 7 and manifest["method"] == "dense"
    assert "host_start" in manifest and "host_end" not in manifest and "resumed_at" not in manifest
    assert manifest["packages"]["python"] and "numpy" in manifest["packages"]
    assert not (folder / "checkpoint.json").exists()
    assert "schema_version" not in MANIFEST  # the caller's dict is not modified


def test_append_makes_rows_readable_before_close_and_checkpoints_the_file_sizes(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    headers = {name: len(",".join(cols)) + 1 for name, cols in TABLES.items()}
    recorder.append({"rounds": [_round_row(1)]}, {"round": 1, "rng": [1, 2]})
    # flushed, although the files are still open
    assert _read(tmp_path, "rounds")[1][:3] == ["1", "0.0", "4.0"]
    checkpoint = read_json(tmp_path / "checkpoint.json")
    assert checkpoint["schema_version"] == SCHEMA_VERSION
    assert checkpoint["state"] == {"round": 1, "rng": [1, 2]}
    offsets = checkpoint["offsets"]
    assert set(offsets) == set(TABLES)
    for name in TABLES:
        assert offsets[name] == (tmp_path / f"{name}.csv").stat().st_size
    assert offsets["rounds"] > headers["rounds"]
    # a table without rows this round is checkpointed just past its header
    assert offsets["clients"] == headers["clients"] and offsets["evals"] == headers["evals"]
    assert recorder.checkpoint == checkpoint

    recorder.append(_rows(2), {"round": 2})
    second = read_json(tmp_path / "checkpoint.json")
    assert all(second["offsets"][n] > offsets[n] for n in TABLES)
    assert second["state"] == {"round": 2}
    recorder.close()
    assert [row[0] for row in _read(tmp_path, "clients")[1:]] == ["2", "2"]


def test_floats_are_written_so_that_they_read_back_exactly(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    value = 0.1 + 0.2
    recorder.append({"evals": [[1, 1 / 3, 10, "accuracy", value, "surrogate"]]}, {})
    recorder.close()
    row = _read(tmp_path, "evals")[1]
    assert row[4] == "0.30000000000000004" and float(row[4]) == value
    assert float(row[1]) == 1 / 3


def test_resume_truncates_rows_written_after_the_checkpoint_and_matches_an_unbroken_run(
    tmp_path,
):
    unbroken = tmp_path / "unbroken"
    recorder = ArmRecorder(unbroken, MANIFEST, resume=False)
    for r in (1, 2, 3):
        recorder.append(_rows(r), {"round": r})
    recorder.close()

    broken = tmp_path / "broken"
    recorder = ArmRecorder(broken, MANIFEST, resume=False)
    recorder.append(_rows(1), {"round": 1})
    recorder.close()
    # a crash between the rows and the checkpoint: round 2's rows (and half a line) on disk
    for name, rows in _rows(2).items():
        with open(broken / f"{name}.csv", "a", newline="", encoding="utf-8") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
            if name == "rounds":
                fh.write("9,half a ro")
    assert len(_read(broken, "clients")) == 1 + 2 + 2

    resumed = ArmRecorder(broken, MANIFEST, resume=True)
    assert resumed.checkpoint["state"] == {"round": 1}
    assert [row[0] for row in _read(broken, "clients")[1:]] == ["1", "1"]
    assert _read(broken, "rounds")[-1] == [str(v) for v in _round_row(1)]
    for r in (2, 3):
        resumed.append(_rows(r), {"round": r})
    resumed.close()
    assert _contents(broken) == _contents(unbroken)


def test_resume_keeps_host_start_and_stamps_each_resume(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    recorder.append(_rows(1), {})
    recorder.close()
    manifest = read_json(tmp_path / "manifest.json")
    manifest["host_start"] = "2000-01-01T00:00:00+00:00"  # tell it apart from "now"
    write_json_atomic(tmp_path / "manifest.json", manifest)

    ArmRecorder(tmp_path, MANIFEST, resume=True).close()
    ArmRecorder(tmp_path, MANIFEST, resume=True).close()
    manifest = read_json(tmp_path / "manifest.json")
    assert manifest["host_start"] == "2000-01-01T00:00:00+00:00"
    assert len(manifest["resumed_at"]) == 2


def test_resume_without_a_checkpoint_starts_the_tables_afresh(tmp_path):
    (tmp_path / "rounds.csv").write_text("stale,rows\n1,2\n", encoding="utf-8")
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=True)
    recorder.close()
    assert recorder.checkpoint is None
    assert _read(tmp_path, "rounds") == [list(ROUND_COLUMNS)]
    assert "resumed_at" not in read_json(tmp_path / "manifest.json")


def test_a_fresh_recorder_ignores_an_existing_checkpoint_and_rewrites_the_tables(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    recorder.append(_rows(1), {"round": 1})
    recorder.close()
    fresh = ArmRecorder(tmp_path, MANIFEST, resume=False)
    fresh.close()
    assert fresh.checkpoint is None
    assert all(len(_read(tmp_path, name)) == 1 for name in TABLES)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_table_shorter_than_its_checkpoint_raises_naming_the_file(tmp_path, table):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    recorder.append(_rows(1), {})
    recorder.close()
    path = tmp_path / f"{table}.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(RunDirError, match=rf"{table}\.csv: shorter than its checkpoint"):
        ArmRecorder(tmp_path, MANIFEST, resume=True)
    assert path.read_bytes() == data[:-3]  # a damaged folder is reported, not "repaired"


def test_a_missing_table_with_a_checkpoint_raises(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    recorder.append(_rows(1), {})
    recorder.close()
    (tmp_path / "evals.csv").unlink()
    with pytest.raises(RunDirError, match=r"evals\.csv"):
        ArmRecorder(tmp_path, MANIFEST, resume=True)


@pytest.mark.parametrize("version", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1, None])
def test_a_checkpoint_of_another_schema_version_raises(tmp_path, version):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    recorder.append(_rows(1), {})
    recorder.close()
    before = _contents(tmp_path)
    checkpoint = read_json(tmp_path / "checkpoint.json")
    if version is None:
        del checkpoint["schema_version"]
    else:
        checkpoint["schema_version"] = version
    write_json_atomic(tmp_path / "checkpoint.json", checkpoint)
    with pytest.raises(RunDirError, match=rf"checkpoint\.json: schema version {version}"):
        ArmRecorder(tmp_path, MANIFEST, resume=True)
    assert _contents(tmp_path) == before  # nothing truncated


def test_a_damaged_checkpoint_raises_run_dir_error(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    recorder.append(_rows(1), {})
    recorder.close()
    (tmp_path / "checkpoint.json").write_text('{"schema_version": 3, "off', encoding="utf-8")
    with pytest.raises(RunDirError, match="damaged JSON"):
        ArmRecorder(tmp_path, MANIFEST, resume=True)


def test_finish_closes_the_tables_writes_the_summary_and_stamps_host_end(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    recorder.append(_rows(1), {})
    summary = {"rounds": 1, "time_to_target_s": {"0.5": None}, "uplink_bytes": 2_000_000}
    recorder.finish(summary)
    assert read_json(tmp_path / "summary.json") == summary
    manifest = read_json(tmp_path / "manifest.json")
    assert "host_end" in manifest and manifest["seed"] == 7
    assert manifest["host_end"] >= manifest["host_start"]  # ISO 8601 in UTC sorts by time
    assert not list(tmp_path.glob("*.tmp"))


def test_write_json_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "data.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": [1.5, None, "x"]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": [1.5, None, "x"]}
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_write_json_atomic_keeps_the_old_file_when_the_data_cannot_be_encoded(tmp_path):
    path = tmp_path / "data.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert read_json(path) == {"a": 1}


def test_read_json_names_a_missing_file(tmp_path):
    with pytest.raises(RunDirError, match=r"nothing\.json: missing"):
        read_json(tmp_path / "nothing.json")


@pytest.mark.parametrize(
    ("metric", "lower"),
    [("loss", True), ("eval_nll", True), ("perplexity", True), ("accuracy", False),
     ("rouge_l", False), ("loss_ratio", False)],
)  # fmt: skip
def test_lower_is_better_goes_by_the_metric_name_suffix(metric, lower):
    assert lower_is_better(metric) is lower


def test_package_versions_lists_python_and_installed_packages_only():
    found = package_versions()
    assert found["python"].count(".") == 2
    assert "numpy" in found and "simpy" in found
    assert all(isinstance(v, str) and v for v in found.values())


# --- issue 23: a run directory is known by its marker, has one writer, keeps what is not its own


def _legacy_run(folder: Path) -> Path:
    """The layout a run wrote before the marker existed: scenario.json, run.json, arm folders."""
    recorder = ArmRecorder(folder / "dense", MANIFEST, resume=False)
    recorder.append(_rows(1), {})
    recorder.close()
    write_json_atomic(folder / "scenario.json", {"name": "x"})
    write_json_atomic(folder / "run.json", {"arms": None})
    return folder


def test_a_folder_is_a_run_directory_by_its_marker_not_by_a_file_name(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "scenario.json").write_text("{}")  # a user's file that happens to have the name
    (mine / "run.json").write_text("{}")
    assert not is_run_dir(mine)
    (mine / MARKER).write_text('{"format": "something else"}')
    assert not is_run_dir(mine)
    (mine / MARKER).write_text("not json")
    assert not is_run_dir(mine)
    fresh = tmp_path / "fresh"
    with run_lock(fresh):
        marker = read_json(fresh / MARKER)
    assert is_run_dir(fresh)
    assert marker["format"] == "fstq-sim run directory"
    assert marker["schema_version"] == SCHEMA_VERSION


def test_the_old_layout_is_a_run_directory_only_with_nothing_foreign_in_it(tmp_path):
    legacy = _legacy_run(tmp_path / "old")
    (legacy / "quality_vs_time.png").write_bytes(b"png")  # written by `fstq-sim plot`
    assert is_run_dir(legacy) and foreign_entries(legacy) == []
    (legacy / "dense" / "notes.txt").write_text("mine")
    assert not is_run_dir(legacy)
    assert foreign_entries(legacy) == [legacy / "dense" / "notes.txt"]
    # a locked use (a resume) gives an old run directory its marker
    (legacy / "dense" / "notes.txt").unlink()
    with run_lock(legacy):
        pass
    assert read_json(legacy / MARKER)["format"] == "fstq-sim run directory"


@pytest.mark.parametrize("path", sorted(str(p) for p in PROJECT_ROOT.glob("results/*/seed-*")))
def test_committed_results_are_recognised_as_run_directories(path):
    assert is_run_dir(Path(path))
    assert foreign_entries(Path(path)) == []


def test_the_lock_is_reentrant_in_a_process_and_refuses_another_process(tmp_path):
    out = tmp_path / "run"
    script = (
        "import sys; from pathlib import Path; from simulator.recorder import run_lock\n"
        "with run_lock(Path(sys.argv[1])): pass\n"
    )
    with run_lock(out), run_lock(out):  # nested: the same holder
        proc = subprocess.run(
            [sys.executable, "-c", script, str(out)], capture_output=True, text=True, cwd=ROOT
        )
        assert proc.returncode == 1 and "in use by another fstq-sim process" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT)
    assert proc.returncode == 0  # released when the block ends


def test_atomic_writes_from_two_processes_never_share_a_temporary(tmp_path):
    """Two writers replacing one file many times: each write is whole and no temporary is
    left (a fixed `name.tmp` lets one writer rename the other's half-written file)."""
    target = tmp_path / "data.json"
    script = (
        "import sys; from pathlib import Path; from simulator.recorder import write_json_atomic\n"
        "for i in range(300):\n"
        "    write_json_atomic(Path(sys.argv[1]), {'writer': sys.argv[2], 'i': i, "
        "'pad': 'x' * 20000})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(target), w], cwd=ROOT)
        for w in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    final = read_json(target)
    assert final["writer"] in ("a", "b") and final["i"] == 299
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_a_failed_write_leaves_no_temporary_and_arrays_pruning_keeps_other_npz(tmp_path):
    recorder = ArmRecorder(tmp_path, MANIFEST, resume=False)
    (tmp_path / "mine.npz").write_bytes(b"user data")
    recorder.write_arrays("state-r1", {"g": np.zeros(3)})
    recorder.write_arrays("state-r2", {"g": np.ones(3)})
    recorder.write_arrays("state-r3", {"g": np.ones(3)})
    recorder.close()
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [
        "mine.npz",
        "state-r2.npz",
        "state-r3.npz",
    ]
    with pytest.raises(TypeError):
        recorder.write_json("x.json", {"a": object()})
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "x.json").exists()
