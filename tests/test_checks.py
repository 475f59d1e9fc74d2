"""Checks before a run (simulator/checks.py): stalls fail at once, implausible input warns."""

from __future__ import annotations

import pickle
import shutil
import time

import pytest
import torch
from conftest import real_scenario_dict, scenario_dict

from simulator.checks import check_scenario
from simulator.cli import main
from simulator.errors import ModelError, ScenarioError, StalledRunError
from simulator.scenario import load_scenario

FEDBUFF = {"strategy": "fedbuff", "rounds": 3, "concurrency": 2, "buffer_size": 1}
NEVER_ONLINE = {"kind": "sessions", "mean_online_s": 1.0, "mean_offline_s": 1e7}


def _check(write_scenario, raw):
    path = write_scenario(raw)
    return check_scenario(load_scenario(path), str(path))


@pytest.mark.parametrize("server", [{"rounds": 3}, FEDBUFF], ids=["sync", "fedbuff"])
def test_nobody_ever_online_fails_within_seconds(write_scenario, tmp_path, server, capsys):
    """Before: validate said OK and run spun without a row or a log line."""
    raw = scenario_dict(availability=NEVER_ONLINE, server=server)
    path = str(write_scenario(raw))
    began = time.monotonic()
    assert main(["validate", path]) == 2
    assert "nobody came online in the 365 days of simulated time" in capsys.readouterr().err
    assert main(["run", path, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "nobody came online" in capsys.readouterr().err
    assert time.monotonic() - began < 30


def test_fedbuff_whose_clients_always_fail_stops_with_counts(write_scenario, monkeypatch):
    """Online for 0.1 s at a time while a round takes 3 s, so every client-round is
    interrupted: no update can ever be buffered. Before: a silent hang."""
    raw = scenario_dict(
        availability={"kind": "sessions", "mean_online_s": 0.1, "mean_offline_s": 1.0},
        server=FEDBUFF,
    )
    monkeypatch.setattr("simulator.engine.MAX_FRUITLESS", 1000)  # 10,000 take ~10 s here
    with pytest.raises(StalledRunError, match=r"last 1,000 client-rounds .*interrupted 1,000"):
        _check(write_scenario, raw)


def test_fedbuff_losing_every_upload_is_refused_at_load(write_scenario):
    with pytest.raises(ScenarioError, match="faults.drop = 1 loses every upload"):
        load_scenario(write_scenario(scenario_dict(server=FEDBUFF, faults={"drop": 1.0})))


def test_real_training_probes_the_first_selection(write_scenario, tiny_models):
    raw = real_scenario_dict(tiny_models["bert"], availability=NEVER_ONLINE)
    with pytest.raises(StalledRunError, match="the run would never start"):
        _check(write_scenario, raw)


def test_hub_id_not_on_disk_fails_validation_at_once(write_scenario):
    raw = real_scenario_dict("nobody/no-such-model-xyz")
    began = time.monotonic()
    with pytest.raises(ModelError, match="not an alias .* or a model in the Hugging Face cache"):
        _check(write_scenario, raw)
    assert time.monotonic() - began < 10


def test_near_zero_links_and_months_long_rounds_warn(write_scenario, tmp_path, capsys):
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "constant", "mbps": 1e-5}  # 10 bps
    checked = _check(write_scenario, raw)
    assert any("uplink of client" in w and "below the 1.00 kbps" in w for w in checked.warnings)
    assert any("round 1 lasts 8e+05 s" in w for w in checked.warnings)
    assert main(["validate", str(write_scenario(raw))]) == 0
    assert "warning: arm 'dense': round 1 lasts" in capsys.readouterr().err


def test_a_csv_trace_read_with_the_wrong_rate_unit_warns(write_scenario, tmp_path):
    trace = tmp_path / "mbps.csv"
    trace.write_text("time,rate\n0,12\n1,9\n2,15\n")  # Mbps, read as bps
    link = {"kind": "trace", "format": "csv", "files": [str(trace)]}
    raw = scenario_dict()
    raw["network"]["uplink"] = {**link, "options": {"rate_unit": "bps"}}
    link_warning, round_warning = _check(write_scenario, raw).warnings
    assert "uplink of client 0 averages 12.00 bps" in link_warning
    assert "check the trace's units (format 'csv', options {'rate_unit': 'bps'})" in link_warning
    assert "round 1 lasts 6.667e+05 s (7.72 days)" in round_warning
    raw["network"]["uplink"] = {**link, "options": {"rate_unit": "Mbps"}}
    assert _check(write_scenario, raw).warnings == []


def test_plausible_scenarios_have_no_warnings(write_scenario):
    assert _check(write_scenario, scenario_dict()).warnings == []


def _model_copy(tiny_models, tmp_path, name: str):
    """A copy of the tiny BERT folder (64 positions are not its limit: 512) to damage."""
    folder = tmp_path / name
    shutil.copytree(tiny_models["bert"], folder)
    return folder


class _Refused:
    """Pickles as a call of print: torch's safe loader refuses it (and validate never runs it)."""

    def __reduce__(self):
        return (print, ("ran",))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("nonsense", "model type `nonsense-arch` but Transformers does not recognize"),
        ("not-json", "config.json of .* is not a usable model config .*not a valid JSON file"),
        ("pickle", r"pytorch_model.bin holds what torch's safe loader refuses \(builtins.print\)"),
        ("not-torch", "pytorch_model.bin holds what .* refuses .*not a torch checkpoint"),
    ],
)
def test_a_model_folder_run_would_fail_on_is_refused_by_validate(
    write_scenario, tiny_models, tmp_path, capsys, damage, expected
):
    """Before: validate said OK; run made its folder, then a ValueError or UnpicklingError
    traceback while loading the model."""
    folder = _model_copy(tiny_models, tmp_path, damage)
    if damage == "nonsense":
        (folder / "config.json").write_text('{"model_type": "nonsense-arch"}')
    elif damage == "not-json":
        (folder / "config.json").write_text("{not json")
    else:
        (folder / "model.safetensors").unlink()
        weights = folder / "pytorch_model.bin"
        if damage == "pickle":
            torch.save({"w": _Refused()}, weights)
        else:
            weights.write_bytes(pickle.dumps({"w": 1}))
    path = write_scenario(real_scenario_dict(folder))
    with pytest.raises(ModelError, match=f"scenario.toml: training.model: .*{expected}"):
        check_scenario(load_scenario(path), str(path))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-cache", "--quiet"]) == 2
    err = capsys.readouterr()
    assert "Traceback" not in err.err and "ran" not in err.out and not out.exists()


def test_seq_len_beyond_the_models_positions_is_refused(write_scenario, tiny_models):
    """Before: OK, then a RuntimeError mid-run once a text was longer than the positions."""
    raw = real_scenario_dict(tiny_models["gpt2"])  # n_positions = 128
    raw["training"]["task"] = "causal_lm"
    raw["training"]["partition"] = {"kind": "iid"}
    raw["training"]["local"]["seq_len"] = 128
    raw["evaluation"] = {"targets": [1.5], "metric": "perplexity"}
    _check(write_scenario, raw)  # exactly the positions: fine
    raw["training"]["local"]["seq_len"] = 129
    with pytest.raises(
        ModelError,
        match=r"training.local.seq_len: 129 tokens exceed the 128 positions of .*"
        r"\(gpt2\). Fix: lower seq_len to at most 128",
    ):
        _check(write_scenario, raw)


def test_mix_that_does_not_sum_to_one_warns_with_the_shares_used(write_scenario):
    """Before: renormalised without a word."""
    for total, mix in ((1.5, {"laptop": 1.5}), (0.5, {"jetson_orin_nano": 0.25, "laptop": 0.25})):
        raw = scenario_dict(population={"clients": 4, "per_round": 4, "mix": mix})
        (warning,) = _check(write_scenario, raw).warnings
        assert f"population.mix sums to {total:g}, not 1: the run uses it as relative" in warning
    assert "shares jetson_orin_nano 0.5, laptop 0.5" in warning


@pytest.mark.parametrize(
    ("key", "value"), [("network.uplink.mbps", "1e300"), ("methods.dense.name", "a" * 300)]
)
def test_what_run_failed_on_mid_way_stops_it_before_its_folder(
    write_scenario, tmp_path, capsys, key, value
):
    """Before: NaN transfer times (ValueError) or `File name too long` after the run folder
    was made; now exit 2, one error line, no folder."""
    out = tmp_path / "out"
    path = str(write_scenario(scenario_dict()))
    assert main(["run", path, "--out", str(out), "--quiet", "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and not out.exists()
