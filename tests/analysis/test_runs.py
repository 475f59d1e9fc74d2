"""Loading run and sweep directories; damaged directories name the file at fault."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rundirs import hand_run, hand_sweep, write_arm

from analysis.runs import complete_seeds, find_arms, host_costs, load_table, parameter_count
from simulator.errors import RunDirError


def test_run_and_sweep_load_with_identity(tmp_path):
    run = hand_run(tmp_path)
    sweep = hand_sweep(tmp_path)
    evals = load_table(run, "evals")
    assert len(evals) == 6 and set(evals["arm"]) == {"dense", "small"}
    assert set(evals["seed"]) == {1} and set(evals["scenario"]) == {"hand"}
    clients = load_table([sweep], "clients")
    assert len(clients) == 3 * 2 * 6  # seeds x arms x client-rounds
    assert sorted(clients["seed"].unique()) == [1, 2, 3]
    one = load_table(run / "small", "rounds")
    assert one["uplink_bytes"].tolist() == [500, 500]


def test_missing_file_names_it(tmp_path):
    run = hand_run(tmp_path)
    (run / "dense" / "clients.csv").unlink()
    with pytest.raises(RunDirError, match=r"dense/clients.csv: missing"):
        load_table(run, "clients")


def test_truncated_csv_names_it(tmp_path):
    run = hand_run(tmp_path)
    path = run / "small" / "rounds.csv"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(RunDirError, match=r"small/rounds.csv: truncated"):
        load_table(run, "rounds")


def test_wrong_columns_name_them(tmp_path):
    run = hand_run(tmp_path)
    path = run / "dense" / "evals.csv"
    path.write_text("round,time_s,value\n0,0.0,0.1\n", encoding="utf-8")
    with pytest.raises(RunDirError, match=r"dense/evals.csv: missing column\(s\) uplink_bytes_cum"):
        load_table(run, "evals")


def test_future_schema_names_the_manifest(tmp_path):
    run = hand_run(tmp_path)
    path = run / "dense" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(dict(manifest, schema_version=99)))
    with pytest.raises(RunDirError, match=r"dense/manifest.json: schema version 99"):
        find_arms(run)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="no arm folders"):
        find_arms(tmp_path)


def test_parameter_count_from_latest_state(tmp_path):
    run = hand_run(tmp_path)
    arm = find_arms(run / "dense")[0]
    assert parameter_count(arm) is None
    np.savez(arm.folder / "state-r2.npz", **{"global": np.zeros(10, np.float32)})
    np.savez(arm.folder / "state-r10.npz", **{"global": np.zeros(12, np.float32)})
    assert parameter_count(arm) == 12


def test_parameter_count_prefers_the_manifest(tmp_path):
    """Committed studies keep no state files: the manifest's count must do without them."""
    run = hand_run(tmp_path)
    arm = find_arms(run / "dense")[0]
    manifest = arm.folder / "manifest.json"
    manifest.write_text(
        json.dumps(json.loads(manifest.read_text()) | {"trainable_parameters": 7}),
    )
    np.savez(arm.folder / "state-r2.npz", **{"global": np.zeros(12, np.float32)})
    assert parameter_count(arm) == 7


def test_an_arm_given_twice_is_refused_not_doubled(tmp_path):
    """Before: compare merged them and reported doubled totals as '1/1 seeds'."""
    run = hand_run(tmp_path)
    with pytest.raises(
        RunDirError, match=r"arm 'dense' of scenario 'hand', seed 1, is given twice"
    ):
        find_arms([run, run])
    copy = tmp_path / "variant"
    import shutil

    shutil.copytree(run, copy)  # a --set variant under the same scenario name and seed
    with pytest.raises(RunDirError, match=r"given in two folders.*--set name="):
        load_table([run, copy], "rounds")


def test_arms_without_a_summary_are_unfinished(tmp_path):
    run = hand_run(tmp_path)
    (run / "small" / "summary.json").unlink()
    assert {a.arm: a.complete for a in find_arms(run)} == {"dense": True, "small": False}


def test_complete_seeds_leave_out_a_seed_still_running(tmp_path):
    """A summary over arms compares the same seeds: a seed with an unfinished arm waits."""
    sweep = hand_sweep(tmp_path)
    arms = find_arms(sweep)
    names = sorted({a.arm for a in arms})
    (sweep / "seed-2" / names[0] / "summary.json").unlink()
    kept = complete_seeds(find_arms(sweep), names)
    assert sorted({a.seed for a in kept}) == [1, 3] and len(kept) == 2 * len(names)
    with pytest.raises(RunDirError, match="no seed has finished"):
        complete_seeds(find_arms(sweep), [*names, "never-run"])


def test_host_costs_sum_the_manifests_and_the_cache_reuse(tmp_path):
    """Host minutes from each manifest's start → end; cache lookups, hits and saved seconds
    summed where a manifest records them (an arm run without the cache adds none)."""
    run = hand_run(tmp_path)
    times = {"dense": ("10:00:00", "10:30:00"), "small": ("11:00:00", "11:06:00")}
    caches = {"dense": {"hits": 3, "misses": 1, "saved_host_s": 90.0}, "small": None}
    for arm, (start, end) in times.items():
        path = run / arm / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest |= {
            "host_start": f"2026-12-02T{start}+00:00",
            "host_end": f"2026-12-02T{end}+00:00",
        }
        if caches[arm]:
            manifest["cache"] = caches[arm]
        path.write_text(json.dumps(manifest))
    costs = host_costs(find_arms(run))
    assert costs == {
        "host_minutes": pytest.approx(36.0),
        "cache_looked": 4,
        "cache_hits": 3,
        "cache_saved_minutes": pytest.approx(1.5),
    }


def test_a_row_with_an_extra_field_is_named_by_file_and_line(tmp_path):
    run = hand_run(tmp_path)
    path = run / "small" / "rounds.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\n") + ",9\n"  # the second round gains a field
    path.write_text("".join(lines))
    with pytest.raises(RunDirError, match=r"small/rounds.csv, line 3: 20 fields .* has 19"):
        load_table(run, "rounds")


def test_a_row_with_a_missing_field_is_named_by_file_and_line(tmp_path):
    """Before: pandas filled the short row with NaN and the report averaged it silently."""
    run = hand_run(tmp_path)
    path = run / "dense" / "evals.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = lines[3].rsplit(",", 1)[0] + "\n"
    path.write_text("".join(lines))
    with pytest.raises(RunDirError, match=r"dense/evals.csv, line 4: 6 fields"):
        load_table(run, "evals")


def test_a_damaged_number_is_named_by_file_line_and_column(tmp_path):
    """Before: the column became text and the report failed with a pandas traceback."""
    run = hand_run(tmp_path)
    path = run / "dense" / "evals.csv"
    path.write_text(path.read_text().replace(",0.5,", ",0.5x,"))
    with pytest.raises(RunDirError, match=r"dense/evals.csv, line 3: value = '0.5x' is not"):
        load_table(run, "evals")


def test_an_arm_without_evals_csv_is_named_not_dropped(tmp_path):
    """Before: arms were found by their evals.csv, so this arm vanished from every table."""
    run = hand_run(tmp_path)
    (run / "dense" / "evals.csv").unlink()
    with pytest.raises(RunDirError, match=r"dense/evals.csv: missing"):
        load_table(run, "evals")


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(RunDirError, match=r"nowhere: no such folder"):
        find_arms(tmp_path / "nowhere")


def _set_manifest(folder, **changes):
    path = folder / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def test_surrogate_and_real_runs_are_refused_together(tmp_path):
    run = hand_run(tmp_path)
    _set_manifest(run / "dense", mode="real")
    _set_manifest(run / "small", mode="surrogate")
    with pytest.raises(RunDirError, match=r"surrogate and real-training runs given together"):
        load_table(run, "evals")


def test_two_scenarios_with_the_same_arm_names_are_refused(tmp_path):
    """Before: rows were keyed by arm and seed, so two scenarios' 'dense' merged as one."""
    first = hand_run(tmp_path)
    other = tmp_path / "other"
    for arm in ("dense", "small"):
        write_arm(other / arm, arm, 1)
        _set_manifest(other / arm, scenario="hand-lte")
    with pytest.raises(RunDirError, match=r"of scenario 'hand-lte', seed 1, is also in scenario"):
        load_table([first, other], "evals")
    _set_manifest(other / "dense", scenario="hand-lte", arm="dense-lte")
    _set_manifest(other / "small", scenario="hand-lte", arm="small-lte")
    assert len(find_arms([first, other])) == 4  # distinct names: comparable, flagged in reports
