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
