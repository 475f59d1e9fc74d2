"""The fstq-sim command line: exit codes, messages without tracebacks, outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, scenario_dict

from simulator.cli import main


def test_validate_ok_and_bad(write_scenario, capsys):
    assert main(["validate", str(write_scenario(scenario_dict()))]) == 0
    assert "OK: 4 clients" in capsys.readouterr().out
    bad = write_scenario(scenario_dict(server={"rounds": 0}), name="bad.toml")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.toml: server.rounds" in err


def test_bad_scenario_exits_2_without_traceback(write_scenario, tmp_path):
    bad = write_scenario(scenario_dict(server={"rounds": 3, "strategy": "nope"}))
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "run", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "server.strategy" in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing ran


def test_run_resume_and_plot(write_scenario, tmp_path, capsys):
    path = write_scenario(scenario_dict())
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--set", "server.rounds=2"]) == 0
    assert (out / "dense" / "summary.json").exists() and (out / "scenario.toml").exists()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2  # refuses to overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--resume", str(out), "--quiet"]) == 0  # already complete: no-op
    assert main(["run", "--resume", str(out), "--seed", "3"]) == 2
    assert main(["plot", str(out)]) == 0
    assert (out / "quality_vs_time.png").stat().st_size > 10_000
    assert main(["run", str(path), "--out", str(tmp_path / "x"), "--arms", "nope"]) == 2
    assert not (tmp_path / "x").exists()


def test_trace_stats_on_a_generated_file(tmp_path, capsys):
    trace = tmp_path / "t.pensieve"
    trace.write_text("0.0\t4.0\n1.0\t2.0\n2.0\t0.0\n")
    assert main(["traces", "stats", str(trace), "--format", "pensieve"]) == 0
    out = capsys.readouterr().out
    assert "t.pensieve" in out and "Mbps" in out
    assert main(["traces", "stats", str(tmp_path / "absent")]) == 2


def test_bad_trace_file_in_a_scenario_fails_validation(write_scenario, tmp_path, capsys):
    junk = tmp_path / "junk.up"
    junk.write_bytes(b"\x00\xff\x13binary junk")
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "trace", "format": "mahimahi", "files": [str(junk)]}
    assert main(["validate", str(write_scenario(raw))]) == 2
    assert "junk.up" in capsys.readouterr().err


def test_replay_real_mahimahi_traces_from_trace_dir(write_scenario, tmp_path, shared_traces):
    raw = scenario_dict(population={"clients": 6, "per_round": 3})
    raw["network"] = {
        "uplink": {"kind": "trace", "format": "mahimahi", "files": ["*.up"]},
        "downlink": {"kind": "trace", "format": "mahimahi", "files": ["*.down"]},
    }
    path = write_scenario(raw)
    out = tmp_path / "replay"
    folder = str(shared_traces / "mahimahi")
    assert (
        main(
            ["run", str(path), "--out", str(out), "--quiet", "--set", f"network.trace_dir={folder}"]
        )
        == 0
    )
    manifest = (out / "dense" / "manifest.json").read_text()
    assert manifest.count(".up") == 6 and manifest.count(".down") == 6  # the six paired files
    rounds = (out / "dense" / "rounds.csv").read_text().splitlines()
    assert len(rounds) == 4
    assert all(float(r.split(",")[3]) > 2.0 for r in rounds[1:])  # slower than compute alone


def test_bad_data_file_fails_before_forced_overwrite(write_scenario, tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text("text,label\nhello there,a\nsecond row\n", encoding="utf-8")
    raw = scenario_dict(
        training={"mode": "real", "data": {"kind": "csv", "path": str(data)}},
        methods=[{"name": "fp16"}],
    )
    out = tmp_path / "run"
    (out / "fp16").mkdir(parents=True)
    (out / "fp16" / "rounds.csv").write_text("earlier results\n")
    code = main(["run", str(write_scenario(raw)), "--out", str(out), "--force", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "data.csv: line 3" in err
    assert (out / "fp16" / "rounds.csv").read_text() == "earlier results\n"
    assert main(["validate", str(write_scenario(raw))]) == 2


# --- issue 12: nothing lost, nothing hangs ----------------------------------------------------


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _break_trainers(monkeypatch) -> None:
    """Make the next run fail while it starts (as a model that will not load does)."""
    import simulator.experiment as experiment

    def broken(scenario, cache=None):
        raise RuntimeError("the model would not load")

    monkeypatch.setattr(experiment, "trainers", broken)


def test_force_keeps_the_old_results_when_the_new_run_cannot_start(
    write_scenario, tmp_path, capsys
):
    path = write_scenario(scenario_dict())
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = _files(out)
    junk = tmp_path / "junk.up"
    junk.write_text("not a trace\n")
    bad = {"kind": "trace", "format": "mahimahi", "files": [str(junk)]}
    raw = scenario_dict(network={"uplink": bad, "downlink": {"kind": "unlimited"}})
    code = main(["run", str(write_scenario(raw, "bad.toml")), "--out", str(out), "--force"])
    assert code == 2 and "junk.up: line 1" in capsys.readouterr().err
    assert _files(out) == before  # every old arm folder and file, byte for byte


def test_force_puts_the_old_results_back_when_the_start_fails(
    write_scenario, tmp_path, monkeypatch
):
    path = write_scenario(scenario_dict())
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = _files(out)
    _break_trainers(monkeypatch)
    with pytest.raises(RuntimeError):
        main(["run", str(path), "--out", str(out), "--force", "--quiet"])
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_force_replaces_results_once_the_new_run_starts(write_scenario, tmp_path):
    path = write_scenario(scenario_dict())
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    args = ["run", str(path), "--out", str(out), "--force", "--quiet", "--set", "server.rounds=1"]
    assert main(args) == 0
    assert len((out / "dense" / "rounds.csv").read_text().splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "scenario.toml"]


def test_force_never_deletes_a_folder_that_is_not_a_run(write_scenario, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["run", str(write_scenario(scenario_dict())), "--out", str(out), "--force"]) == 2
    assert "not a fstq-sim run directory" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_out_naming_a_file_or_an_unwritable_place_is_a_clear_error(
    write_scenario, tmp_path, capsys
):
    path = str(write_scenario(scenario_dict()))
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["run", path, "--out", str(afile), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["run", path, "--out", str(afile / "sub"), "--quiet"]) == 2
    assert "is a file, so no folder can be made there" in capsys.readouterr().err
    assert main(["run", path, "--out", "/proc/fstq-sim-run", "--quiet"]) == 2
    assert "cannot write in /proc" in capsys.readouterr().err
    assert afile.read_text() == "x"


def test_resume_keeps_the_arms_the_run_was_started_with(write_scenario, tmp_path, monkeypatch):
    raw = scenario_dict(
        methods=[
            {"name": "dense", "payload_mb": 1.0, "compute_s": 2.0},
            {"name": "small", "payload_mb": 0.1, "compute_s": 2.0},
        ]
    )
    from simulator.recorder import ArmRecorder

    path, out = str(write_scenario(raw)), tmp_path / "run"
    original = ArmRecorder.append

    def crash(self, rows, state):
        if "rounds" in rows:
            raise KeyboardInterrupt  # Ctrl-C in the first round
        original(self, rows, state)

    monkeypatch.setattr(ArmRecorder, "append", crash)
    assert main(["run", path, "--out", str(out), "--arms", "small", "--quiet"]) == 130
    monkeypatch.setattr(ArmRecorder, "append", original)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["small"]


def test_resume_on_an_arm_folder_names_the_run(write_scenario, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(write_scenario(scenario_dict())), "--out", str(out), "--quiet"]) == 0
    before = _files(out)
    assert main(["run", "--resume", str(out / "dense"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"fstq-sim run --resume {out} --arms dense" in err
    assert _files(out) == before  # no nested run inside the arm


def test_a_failed_start_leaves_nothing_that_blocks_a_rerun(write_scenario, tmp_path, monkeypatch):
    path = str(write_scenario(scenario_dict()))
    out = tmp_path / "run"
    _break_trainers(monkeypatch)
    with pytest.raises(RuntimeError):
        main(["run", path, "--out", str(out), "--quiet"])
    assert not out.exists()
    monkeypatch.undo()
    # a stub a killed start may leave (marker, scenario files, no arm results) does not block
    from simulator.recorder import run_lock

    with run_lock(out):
        (out / "scenario.json").write_text("{}")
    assert main(["run", path, "--out", str(out), "--quiet"]) == 0


def test_sigterm_keeps_rounds_and_says_how_to_resume(write_scenario, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from simulator.recorder import ArmRecorder

    path = str(write_scenario(scenario_dict()))
    out = tmp_path / "run"
    original = ArmRecorder.append
    calls = {"n": 0}

    def term_at_third(self, rows, state):
        calls["n"] += 1
        original(self, rows, state)
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(ArmRecorder, "append", term_at_third)
    assert main(["run", path, "--out", str(out), "--quiet"]) == 143
    assert f"fstq-sim run --resume {out}" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    monkeypatch.setattr(ArmRecorder, "append", original)
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    reference = tmp_path / "ref"
    assert main(["run", path, "--out", str(reference), "--quiet"]) == 0
    for name in ("rounds.csv", "clients.csv", "evals.csv"):
        assert (out / "dense" / name).read_bytes() == (reference / "dense" / name).read_bytes()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["traces", "stats", "t", "--option", "rate_unit"], "--option 'rate_unit': expected"),
        (["validate", "S", "--set", "=5"], "--set '=5': no key before '='"),
        (["plot", "R", "--out", "noext"], "--out noext: name a .png or .svg file"),
    ],
)
def test_command_line_mistakes_name_the_flag(argv, message, write_scenario, tmp_path, capsys):
    argv = [str(write_scenario(scenario_dict())) if a == "S" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_every_argument_has_help_text():
    from simulator.cli import build_parser

    def walk(parser):
        for action in parser._actions:
            if action.choices and isinstance(action.choices, dict):  # subcommands
                yield from (a for sub in action.choices.values() for a in walk(sub))
            elif action.dest != "help":
                yield action

    missing = [a.dest for a in walk(build_parser()) if not a.help]
    assert missing == []


# --- issue 23: run directories are known by their marker; nothing else is ever deleted --------


@pytest.mark.parametrize("force", [False, True])
def test_a_user_folder_holding_a_scenario_json_is_never_touched(
    write_scenario, tmp_path, capsys, force
):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    (mine / "scenario.json").write_text('{"mine": true}')
    (mine / "notes.txt").write_text("keep me")
    before = _files(mine)
    args = ["run", str(write_scenario(scenario_dict())), "--out", str(mine), "--quiet"]
    assert main(args + ["--force"] * force) == 2
    assert "not a fstq-sim run directory (no fstq-sim-run.json)" in capsys.readouterr().err
    assert _files(mine) == before
    assert main(["run", "--resume", str(mine), "--quiet"]) == 2
    assert "not a fstq-sim run directory" in capsys.readouterr().err
    assert _files(mine) == before


def test_force_replaces_a_run_directory_only_if_it_holds_nothing_but_its_own_files(
    write_scenario, tmp_path, capsys
):
    path = str(write_scenario(scenario_dict()))
    out = tmp_path / "run"
    assert main(["run", path, "--out", str(out), "--quiet"]) == 0
    assert (out / "fstq-sim-run.json").is_file()
    assert main(["plot", str(out)]) == 0  # a plot is the tool's own file too
    (out / "dense" / "my-notes.md").write_text("mine")
    (out / "extra").mkdir()
    before = _files(out)
    assert main(["run", path, "--out", str(out), "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds files fstq-sim did not write (dense/my-notes.md, extra)" in err
    assert _files(out) == before
    (out / "dense" / "my-notes.md").unlink()
    (out / "extra").rmdir()
    assert main(["run", path, "--out", str(out), "--force", "--quiet"]) == 0


def test_replay_checks_the_run_it_starts_from_and_keeps_its_set_changes(
    write_scenario, tmp_path, capsys
):
    path = str(write_scenario(scenario_dict()))
    run, again, cache = tmp_path / "run", tmp_path / "again", str(tmp_path / "cache")
    assert main(["run", path, "--out", str(run), "--quiet"]) == 0
    slower = "network.uplink.mbps=0.5"
    replay = ["replay", str(run), "--set", slower, "--out", str(again), "--quiet", "--cache", cache]
    assert main(replay) == 0
    assert json.loads((again / "scenario.json").read_text())["network"]["uplink"]["mbps"] == 0.5
    manifest = json.loads((again / "dense" / "manifest.json").read_text())
    assert (
        manifest["scenario_sha256"]
        != json.loads((run / "dense" / "manifest.json").read_text())["scenario_sha256"]
    )
    assert main(["run", "--resume", str(again), "--quiet"]) == 0  # a replay resumes as itself
    # the run's scenario.json edited after it ran: not the run it claims to be
    raw = json.loads((run / "scenario.json").read_text())
    raw["methods"][0]["payload_mb"] = 9.0
    (run / "scenario.json").write_text(json.dumps(raw))
    capsys.readouterr()
    assert main([*replay[:-2], "--force", "--cache", cache]) == 2
    assert "methods[0].payload_mb (1.0 then, 9.0 now)" in capsys.readouterr().err
    assert main(["replay", str(tmp_path), "--out", str(tmp_path / "x"), "--quiet"]) == 2


def test_a_surrogate_run_neither_opens_nor_needs_the_replay_cache(
    write_scenario, tmp_path, monkeypatch
):
    """A surrogate scenario trains nothing: an unusable cache path (a file) does not stop it,
    and the default cache folder is not created for it."""
    taken = tmp_path / "cache.txt"
    taken.write_text("not a folder")
    path = write_scenario(scenario_dict())
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--cache", str(taken)]) == 0
    assert main(["run", "--resume", str(out), "--quiet", "--cache", str(taken)]) == 0
    assert taken.read_text() == "not a folder" and (out / "dense" / "summary.json").is_file()
    # nor does its replay (it used to demand a usable cache, and to create the default one)
    again, unused = tmp_path / "again", tmp_path / "unused"
    assert main(["replay", str(out), "--out", str(again), "--quiet", "--cache", str(taken)]) == 0
    assert main(["replay", str(out), "--out", str(again), "--quiet", "--force", "--no-cache"]) == 0
    monkeypatch.setenv("FSTQ_SIM_REPLAY_CACHE", str(unused))
    assert main(["replay", str(out), "--out", str(again), "--quiet", "--force"]) == 0
    assert not unused.exists() and (again / "dense" / "summary.json").is_file()


def test_resume_and_replay_of_a_file_are_errors_not_tracebacks(tmp_path, capsys):
    """`run --resume FILE` and `replay FILE` read FILE/scenario.json: a NotADirectoryError."""
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main(["run", "--resume", str(taken)]) == 2
    assert f"--resume {taken}: is a file" in capsys.readouterr().err
    assert main(["replay", str(taken), "--out", str(tmp_path / "again")]) == 2
    assert f"replay {taken}: is a file" in capsys.readouterr().err
    assert taken.read_text() == "mine" and not (tmp_path / "again").exists()


def test_replay_checks_its_overrides_as_validate_does(write_scenario, tmp_path, capsys):
    """`replay --set` makes a new scenario: it gets validate's checks and warnings (a link
    averaging 500 bps was replayed without a word)."""
    path = str(write_scenario(scenario_dict()))
    run, again = tmp_path / "run", tmp_path / "again"
    assert main(["run", path, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    slow = "network.uplink.mbps=0.0005"
    assert main(["replay", str(run), "--set", slow, "--out", str(again), "--quiet"]) == 0
    assert "warning: uplink of client 0 averages 500.00 bps" in capsys.readouterr().err


def test_an_empty_out_is_an_error_not_the_default_folder(
    write_scenario, tmp_path, monkeypatch, capsys
):
    """`--out "$OUT"` with OUT unset wrote into runs/NAME-seedS without a word."""
    monkeypatch.chdir(tmp_path)
    path = str(write_scenario(scenario_dict()))
    assert main(["run", path, "--out", "", "--quiet"]) == 2
    assert "--out is empty; name a folder, or leave --out out for runs/unit-seed7" in (
        capsys.readouterr().err
    )
    assert main(["sweep", path, "--seeds", "1", "--out", ""]) == 2
    assert "leave --out out for runs/unit-sweep" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_force_replaces_a_run_holding_its_own_compare_report(write_scenario, tmp_path, capsys):
    """A report `compare` wrote inside the run directory is fstq-sim's own: a later --force
    run replaces it with the run (a folder of the user's there would still stop it)."""
    path = write_scenario(scenario_dict())
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    report = ["compare", str(out), "--baseline", "dense", "--target", "0.5"]
    assert main([*report, "--out", str(out / "report")]) == 0
    assert (out / "report" / "report.md").is_file()
    assert main(["run", str(path), "--out", str(out), "--quiet", "--force"]) == 0
    assert not (out / "report").exists() and (out / "dense" / "summary.json").is_file()
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("keep")
    assert main(["run", str(path), "--out", str(out), "--quiet", "--force"]) == 2
    assert (out / "mine" / "notes.txt").read_text() == "keep"
