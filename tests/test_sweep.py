"""Sweeps: seed folders byte-identical to single runs, resumable, parallel = serial."""

from __future__ import annotations

from conftest import interrupt_at_append, real_scenario_dict, scenario_dict

from simulator.cli import main
from simulator.sweep import sweep


def test_sweep_seeds_match_single_runs_and_resume(write_scenario, tmp_path, monkeypatch):
    path = write_scenario(scenario_dict())
    out = tmp_path / "sweep"
    interrupt_at_append(monkeypatch, 5, lambda: sweep(str(path), 2, out, []))
    assert not (out / "seed-8" / "dense" / "summary.json").exists()
    assert main(["sweep", str(path), "--seeds", "2", "--out", str(out)]) == 0
    assert main(["run", str(path), "--seed", "8", "--out", str(tmp_path / "one"), "--quiet"]) == 0
    for table in ("rounds", "clients", "evals"):
        name = f"dense/{table}.csv"
        assert (out / "seed-8" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["seed-7", "seed-8"]


def test_parallel_sweep_equals_serial(write_scenario, tmp_path):
    path = write_scenario(scenario_dict())
    serial, parallel = tmp_path / "a", tmp_path / "b"
    assert sweep(str(path), 2, serial, []) == [serial / "seed-7", serial / "seed-8"]
    sweep(str(path), 2, parallel, [], jobs=2)
    for seed in ("seed-7", "seed-8"):
        assert (serial / seed / "dense" / "clients.csv").read_bytes() == (
            parallel / seed / "dense" / "clients.csv"
        ).read_bytes()


def test_sweep_refuses_a_folder_of_another_scenario(write_scenario, tmp_path, capsys):
    path = write_scenario(scenario_dict())
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--seeds", "1", "--out", str(out)]) == 0
    args = ["sweep", str(path), "--seeds", "1", "--out", str(out), "--set", "server.rounds=2"]
    assert main(args) == 2
    assert "holds a different scenario" in capsys.readouterr().err


def test_sweep_resumes_over_moved_identical_traces_not_changed_ones(
    write_scenario, tmp_path, shared_traces, capsys
):
    """A sweep started on traces in one folder resumes on byte-identical copies elsewhere (the
    shipped traces/ replacing ../shared), and refuses copies whose bytes differ."""
    first, moved, changed = (tmp_path / name for name in ("first", "moved", "changed"))
    for folder in (first, moved, changed):
        folder.mkdir()
        for name in ("Verizon-LTE-short.up", "TMobile-LTE-short.up"):
            (folder / name).write_bytes((shared_traces / "mahimahi" / name).read_bytes())
    (changed / "TMobile-LTE-short.up").write_bytes(b"5\n10\n")
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "trace", "format": "mahimahi", "files": ["*.up"]}
    path = write_scenario(raw)
    out = str(tmp_path / "sweep")

    def sweep_over(folder):
        args = ["sweep", str(path), "--seeds", "1", "--out", out]
        return main([*args, "--set", f"network.trace_dir={folder}"])

    assert sweep_over(first) == 0
    assert sweep_over(moved) == 0
    assert sweep_over(changed) == 2
    assert "holds a different scenario" in capsys.readouterr().err


def test_sweep_checks_the_cache_before_any_seed_starts(
    write_scenario, tmp_path, minilm_path, capsys
):
    """A real sweep given a file as --cache stops before its progress bar or any seed folder;
    a surrogate sweep trains nothing, so the same path does not stop it (as with `run`)."""
    taken = tmp_path / "cache.txt"
    taken.write_text("not a folder")
    real = write_scenario(real_scenario_dict(minilm_path), "real.toml")
    out = tmp_path / "sweep"
    assert main(["sweep", str(real), "--seeds", "2", "--out", str(out), "--cache", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "cache.txt: the replay cache must be a writable folder" in err
    assert "seed/s" not in err and not out.exists()
    surrogate = write_scenario(scenario_dict())
    assert (
        main(["sweep", str(surrogate), "--seeds", "1", "--out", str(out), "--cache", str(taken)])
        == 0
    )
    assert (out / "seed-7" / "dense" / "summary.json").is_file()
    assert taken.read_text() == "not a folder"


def test_sweep_refuses_a_file_where_a_seed_folder_goes_before_any_seed(
    write_scenario, tmp_path, capsys
):
    """A file at --out, above it or at a seed folder's place was a NotADirectoryError traceback
    (after earlier seeds had run); now it is an error before the first seed."""
    path = str(write_scenario(scenario_dict()))
    taken = tmp_path / "taken"
    taken.write_text("mine")
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "seed-8").write_text("mine too")
    for target, blocking in ((taken, taken), (taken / "sub", taken), (out, out / "seed-8")):
        assert main(["sweep", path, "--seeds", "2", "--out", str(target)]) == 2
        assert f"{blocking} is a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["seed-8"]
    assert taken.read_text() == "mine"


def test_sweep_seed_and_job_counts_are_checked_first(write_scenario, tmp_path, capsys):
    path = str(write_scenario(scenario_dict()))
    out = tmp_path / "sweep"
    for seeds, jobs in (("0", "1"), ("1000000000", "1"), ("2", "0")):
        assert main(["sweep", path, "--seeds", seeds, "--jobs", jobs, "--out", str(out)]) == 2
        assert "--seeds must be 1 to 10,000 and --jobs at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_sweep_checks_what_validate_checks_before_any_seed(
    write_scenario, tmp_path, minilm_path, capsys
):
    """A sequence length beyond the model's positions: validate and run refuse it; the sweep
    used to run every seed with it (exit 0)."""
    raw = real_scenario_dict(minilm_path)
    raw["training"]["local"]["seq_len"] = 100_000
    path = str(write_scenario(raw))
    out = tmp_path / "sweep"
    assert main(["sweep", path, "--seeds", "1", "--out", str(out), "--no-cache"]) == 2
    assert "seq_len: 100000 tokens exceed the 512 positions" in capsys.readouterr().err
    assert not out.exists()
