"""The fstq-sim command line: exit codes, messages without tracebacks, outputs."""

from __future__ import annotations

import subprocess
import sys

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
