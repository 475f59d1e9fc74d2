"""`fstq-sim plot` and `fstq-sim compare` on a real tiny surrogate run."""

from __future__ import annotations

import pytest
from conftest import real_scenario_dict, scenario_dict

from analysis import metrics
from analysis.runs import find_arms
from simulator.cli import main
from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import scenario_from_dict


@pytest.fixture()
def tiny_run(tmp_path):
    methods = [
        {"name": "dense", "payload_mb": 1.0, "compute_s": 2.0},
        {"name": "small", "payload_mb": 0.25, "compute_s": 2.0},
    ]
    scenario = scenario_from_dict(scenario_dict(methods=methods), "unit", base=tmp_path)
    out = tmp_path / "run"
    prepare_out(out, None, scenario)
    run_scenario(scenario, out, progress=False)
    return out


def test_plot_default_and_kinds(tiny_run, tmp_path, capsys):
    assert main(["plot", str(tiny_run)]) == 0
    assert (tiny_run / "quality_vs_time.png").stat().st_size > 10_000
    for kind in ("quality-bytes", "round-cdf", "timeline"):
        out = tmp_path / f"{kind}.svg"
        assert main(["plot", str(tiny_run), "--kind", kind, "--out", str(out)]) == 0
        assert out.stat().st_size > 5_000
    assert main(["plot", str(tiny_run), "--kind", "round-cdf"]) == 0
    assert (tiny_run / "round_cdf.png").exists()
    capsys.readouterr()
    assert main(["plot", str(tiny_run), "--kind", "bits"]) == 2  # surrogate: no parameter count
    assert "state-r*.npz" in capsys.readouterr().err


def test_compare_writes_the_reports(tiny_run, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", str(tiny_run), "--baseline", "dense", "--target", "0.35", "--out", str(out)]
    assert main(args) == 0
    text = (out / "report.md").read_text()
    assert "| dense | 1/1 reached | 8.00 s | 8.00 MB | 1.00 × | 0.00 % |" in text
    assert "data:image/png;base64," in (out / "report.html").read_text()
    capsys.readouterr()
    assert main([*args[:3], "nope", *args[4:]]) == 2
    assert "--baseline: arm 'nope'" in capsys.readouterr().err


def test_bits_per_parameter_of_a_real_fp16_run(tiny_models, tmp_path):
    raw = real_scenario_dict(tiny_models["bert"], server={"rounds": 2})
    scenario = scenario_from_dict(raw, "unit", base=tmp_path)
    out = tmp_path / "real"
    prepare_out(out, None, scenario)
    run_scenario(scenario, out, progress=False)
    bits = metrics.bits_per_parameter(find_arms(out))["bits_per_param"]
    assert len(bits) == 2 and ((bits >= 16.0) & (bits < 16.5)).all()  # fp16 + small framing
    assert main(["plot", str(out), "--kind", "bits", "--out", str(tmp_path / "bits.png")]) == 0
    assert (tmp_path / "bits.png").stat().st_size > 5_000
    args = ["compare", str(out), "--baseline", "fp16", "--target", "0.0", "--out", str(tmp_path)]
    assert main(args) == 0
    assert (tmp_path / "bits.png").stat().st_size > 5_000
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 5


def test_out_paths_of_the_wrong_kind_exit_2_with_the_fix(tiny_run, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    compare = ["compare", str(tiny_run), "--baseline", "dense", "--target", "0.35", "--out"]
    assert main([*compare, str(tmp_path / "afile")]) == 2
    assert "afile: is a file; name a folder" in capsys.readouterr().err
    assert main(["plot", str(tiny_run), "--out", str(tmp_path)]) == 2
    assert "is a folder; name a file in it" in capsys.readouterr().err
    assert main(["plot", str(tiny_run), "--out", str(tmp_path / "afile" / "q.png")]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
