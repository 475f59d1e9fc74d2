"""Scenario files: valid ones load; every kind of bad one names file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, real_scenario_dict, scenario_dict

from simulator.errors import ScenarioError
from simulator.scenario import apply_override, load_scenario, parse_override


def test_valid_scenario_loads_with_defaults(write_scenario):
    scenario = load_scenario(write_scenario(scenario_dict()))
    assert scenario.population.clients == 4
    assert scenario.network.uplink.kind == "constant"
    assert scenario.availability.kind == "always"
    assert scenario.evaluation.every == 1
    assert scenario.method("dense").compute_s == 2.0


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "scenarios").glob("*.toml")))
def test_shipped_scenarios_validate(path: Path):
    assert load_scenario(path).name  # their traces and data ship in traces/ and data/


def _error(write_scenario, raw: dict, *overrides: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write_scenario(raw), overrides)
    return str(info.value)


def test_unknown_key_names_file_key_and_fix(write_scenario):
    raw = scenario_dict(server={"rounds": 3, "roundz": 4})
    message = _error(write_scenario, raw)
    assert "scenario.toml: server.roundz: unknown key" in message
    assert "check its spelling" in message


def test_wrong_type_shows_value(write_scenario):
    message = _error(write_scenario, scenario_dict(server={"rounds": "many"}))
    assert "server.rounds" in message and "'many'" in message


def test_impossible_value_per_round_above_clients(write_scenario):
    raw = scenario_dict(population={"clients": 3, "per_round": 5})
    message = _error(write_scenario, raw)
    assert "population" in message and "per_round (5) exceeds clients (3)" in message


def test_bad_link_kind_and_field_in_method_named_by_arm(write_scenario):
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "warp"}
    raw["methods"][0]["compute_s"] = -1
    message = _error(write_scenario, raw)
    assert "network.uplink" in message and "warp" in message
    assert "methods['dense'].compute_s" in message


def test_negative_mbps_in_link_branch(write_scenario):
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "constant", "mbps": -3}
    assert "network.uplink.mbps" in _error(write_scenario, raw)


def test_missing_trace_file_fails_before_running(write_scenario):
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "trace", "format": "mahimahi", "files": ["nope.up"]}
    message = _error(write_scenario, raw)
    assert "network.uplink.files" in message and "nope.up" in message


def test_missing_required_section(write_scenario):
    raw = scenario_dict()
    del raw["server"]
    assert "server: Field required" in _error(write_scenario, raw)


def test_duplicate_arm_names(write_scenario):
    raw = scenario_dict(methods=[{"name": "a", "payload_mb": 1, "compute_s": 1}] * 2)
    assert "repeated: a" in _error(write_scenario, raw)


def test_method_needs_exactly_one_payload(write_scenario):
    raw = scenario_dict(methods=[{"name": "a", "compute_s": 1}])
    assert "exactly one of payload_mb or bits_per_param" in _error(write_scenario, raw)


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(ScenarioError, match="bad.toml: invalid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "absent.toml")
    junk = tmp_path / "junk.toml"
    junk.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(junk)


def test_overrides_parse_toml_values_and_address_arms(write_scenario):
    path = write_scenario(scenario_dict())
    scenario = load_scenario(path, ["server.rounds=9", "methods.dense.compute_s=3.5", "name=x"])
    assert scenario.server.rounds == 9
    assert scenario.method("dense").compute_s == 3.5
    assert scenario.name == "x"
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


def test_override_errors_are_clear(write_scenario):
    path = write_scenario(scenario_dict())
    with pytest.raises(ScenarioError, match="expected key=value"):
        load_scenario(path, ["server.rounds"])
    with pytest.raises(ScenarioError, match="no item 'nope'; known: dense"):
        load_scenario(path, ["methods.nope.compute_s=1"])
    raw = {"a": 1}
    with pytest.raises(ScenarioError, match="is not a table"):
        apply_override(raw, "a.b", 2)


def test_sessions_need_params_or_file(write_scenario):
    raw = scenario_dict(availability={"kind": "sessions", "mean_online_s": 10.0})
    assert "mean_online_s and mean_offline_s" in _error(write_scenario, raw)


def _real(**training) -> dict:
    base = {"mode": "real", "data": {"kind": "synthetic"}}
    return scenario_dict(training={**base, **training}, methods=[{"name": "fp16"}])


def test_real_mode_defaults_and_codec(write_scenario):
    scenario = load_scenario(write_scenario(_real()))
    assert scenario.training.model == "minilm" and scenario.training.lora.rank == 8
    assert scenario.method("fp16").codec == "fp16" and scenario.metrics()[0] == "accuracy"


def test_real_mode_rejects_modelled_costs(write_scenario):
    raw = _real()
    raw["methods"] = [{"name": "dense", "payload_mb": 1.0}]
    message = _error(write_scenario, raw)
    assert "arm 'dense': payload_mb only apply to training.mode = 'surrogate'" in message


def test_real_mode_bad_values_name_their_keys(write_scenario):
    message = _error(write_scenario, _real(data={"kind": "parquet"}))
    assert "training.data" in message and "parquet" in message
    message = _error(write_scenario, _real(), "evaluation.metric=bleu")
    assert "evaluation.metric 'bleu'" in message and "accuracy, loss" in message
    causal = _real(task="causal_lm", data={"kind": "jsonl", "path": "scenario.toml"})
    assert "partition.kind = 'iid'" in _error(write_scenario, causal)
    message = _error(write_scenario, _real(local={"steps": 0}))
    assert "training.local.steps" in message


def test_missing_data_file_names_key_and_folder(write_scenario):
    message = _error(write_scenario, _real(data={"kind": "pubmedqa", "path": "nope.json"}))
    assert "training.data.path: 'nope.json' matches no file" in message
    assert "relative paths start at the scenario's folder" in message


def test_codec_names_and_options_are_checked_at_load(write_scenario):
    raw = _real()
    raw["methods"] = [{"name": "x", "codec": "zip"}]
    assert "unknown codec 'zip'; use one of" in _error(write_scenario, raw)
    raw["methods"] = [{"name": "x", "codec": "fp16", "codec_options": {"bits": 4}}]
    message = _error(write_scenario, raw)
    assert "arm 'x': codec_options for 'fp16': bits: Extra inputs are not permitted" in message
    raw["methods"] = [{"name": "x", "codec": "nowhere.module:Codec"}]
    assert "cannot import codec 'nowhere.module:Codec'" in _error(write_scenario, raw)


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (
            {"strategy": "fedbuff", "concurrency": 4, "buffer_size": 5},
            "server: buffer_size (K = 5) exceeds concurrency (C = 4)",
        ),
        (
            {"strategy": "deadline", "deadline_s": -5},
            "server.deadline_s: deadline_s must be a positive number of seconds",
        ),
        (
            {"strategy": "overselect", "epsilon": -0.1},
            "server.epsilon: epsilon must be in [0, 1e+07] (the fraction of extra clients",
        ),
        (
            {"strategy": "fedbuff", "buffer_size": 2},
            "server.concurrency: Field required. Fix: add it",
        ),
        ({"strategy": "overselect"}, "server.epsilon: Field required. Fix: add it"),
        ({"strategy": "deadline"}, "needs exactly one of deadline_s"),
        ({"strategy": "deadline", "deadline_s": 10, "percentile": 90}, "needs exactly one of"),
        ({"strategy": "deadline", "percentile": 0}, "percentile must be in (0, 100]"),
        (
            {"strategy": "fedbuff", "concurrency": 4, "buffer_size": 2, "max_staleness": -1},
            "server.max_staleness: max_staleness must be >= 0 versions",
        ),
        (
            {"strategy": "fedbuff", "concurrency": 0, "buffer_size": 2},
            "server.concurrency: concurrency must be a positive number of clients",
        ),
        (
            {"strategy": "wait"},
            "server.strategy: unknown strategy 'wait'. Fix: use one of 'sync', 'deadline'",
        ),
        ({"strategy": "sync", "epsilon": 0.2}, "server.epsilon: unknown key"),
    ],
)
def test_invalid_strategy_parameters_name_key_and_fix(write_scenario, server, expected):
    assert expected in _error(write_scenario, scenario_dict(server={"rounds": 3, **server}))


def test_strategy_parameters_checked_against_the_population(write_scenario):
    fedbuff = {"rounds": 3, "strategy": "fedbuff", "concurrency": 5, "buffer_size": 2}
    assert "concurrency (5) exceeds population.clients (4)" in _error(
        write_scenario, scenario_dict(server=fedbuff)
    )
    over = {"rounds": 3, "strategy": "overselect", "epsilon": 0.3}  # ⌈4·1.3⌉ = 6 > 4
    assert "selects 6 clients per round, more than population.clients (4)" in _error(
        write_scenario, scenario_dict(server=over)
    )
    fedbuff["concurrency"] = 2
    always_drop = scenario_dict(server=fedbuff, availability={"kind": "bernoulli", "p_drop": 1.0})
    assert "p_drop = 1 drops every client FedBuff starts" in _error(write_scenario, always_drop)


def test_each_strategy_loads_with_its_parameters(write_scenario):
    path = write_scenario(scenario_dict())
    assert load_scenario(path).server.strategy == "sync"  # the default
    deadline = load_scenario(path, ["server.strategy=deadline", "server.percentile=80"]).server
    assert (deadline.percentile, deadline.deadline_s) == (80, None)
    fedbuff = load_scenario(
        path, ["server.strategy=fedbuff", "server.concurrency=3", "server.buffer_size=3"]
    ).server
    assert (fedbuff.concurrency, fedbuff.buffer_size, fedbuff.max_staleness) == (3, 3, None)


def test_downlink_codec_is_checked_like_the_uplink_codec(write_scenario):
    raw = _real()
    raw["methods"] = [
        {"name": "x", "downlink_codec": "qsgd", "downlink_codec_options": {"bits": 4}}
    ]
    assert load_scenario(write_scenario(raw)).method("x").downlink_codec == "qsgd"
    raw["methods"] = [{"name": "x", "downlink_codec": "zip"}]
    assert "unknown downlink codec 'zip'" in _error(write_scenario, raw)
    raw["methods"] = [{"name": "x", "downlink_codec": "qsgd", "downlink_codec_options": {"b": 4}}]
    assert "arm 'x': downlink_codec_options for 'qsgd': b: Extra inputs" in _error(
        write_scenario, raw
    )
    raw["methods"] = [{"name": "x", "downlink_codec": "fstq"}]
    assert "needs a Fisher estimate" in _error(write_scenario, raw)
    surrogate = scenario_dict()
    surrogate["methods"][0]["downlink_codec"] = "fp32"
    assert "a surrogate arm states its broadcast size as downlink_mb" in _error(
        write_scenario, surrogate
    )


def test_paired_traces_need_a_trace_link_with_as_many_files(write_scenario, shared_traces):
    folder = shared_traces / "mahimahi"
    raw = scenario_dict()
    raw["network"] = {
        "trace_dir": str(folder),
        "uplink": {"kind": "trace", "format": "mahimahi", "files": ["*.up"]},
        "downlink": {
            "kind": "trace",
            "format": "mahimahi",
            "files": ["*.down"],
            "assign": "paired",
        },
    }
    assert load_scenario(write_scenario(raw)).network.downlink.assign == "paired"
    raw["network"]["downlink"]["files"] = ["ATT-LTE-driving.down"]
    assert "there are 1 downlink and 6 uplink files" in _error(write_scenario, raw)
    raw["network"]["uplink"] = {"kind": "constant", "mbps": 8.0}
    assert "make uplink a trace link" in _error(write_scenario, raw)


def test_set_paths_are_relative_to_the_current_directory(
    write_scenario, shared_traces, monkeypatch
):
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "trace", "format": "mahimahi", "files": ["*.up"]}
    path = write_scenario(raw)
    monkeypatch.chdir(shared_traces)
    scenario = load_scenario(path, ["network.trace_dir=mahimahi"])
    assert scenario.network.trace_dir == str((shared_traces / "mahimahi").resolve())
    assert len(scenario.network.uplink.files) == 6


def test_set_paths_through_a_symlinked_folder(write_scenario, shared_traces, tmp_path, monkeypatch):
    """A checkout whose ../shared is a link: paths come out resolved, and the same files."""
    link = tmp_path / "linked-shared"
    link.symlink_to(shared_traces, target_is_directory=True)
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "trace", "format": "mahimahi", "files": ["*.up"]}
    path = write_scenario(raw)
    monkeypatch.chdir(link)
    scenario = load_scenario(path, ["network.trace_dir=mahimahi"])
    assert scenario.network.trace_dir == str((shared_traces / "mahimahi").resolve())
    assert scenario.network.uplink.files == sorted(
        str(p.resolve()) for p in (shared_traces / "mahimahi").glob("*.up")
    )


# --- issue 12: what validate passed and run then crashed on --------------------------------


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        ("os:getcwd", "codec 'os:getcwd' is a builtin_function_or_method, not a class"),
        (
            "collections:OrderedDict",
            "codec 'collections:OrderedDict' is not a codec: it lacks codec_id, needs_fisher, "
            "fisher_rho, budget_for, encode, decode",
        ),
    ],
)
def test_a_codec_that_is_not_one_fails_at_load(write_scenario, codec, message):
    from conftest import real_scenario_dict

    raw = real_scenario_dict("minilm", methods=[{"name": "x", "codec": codec}])
    assert message in _error(write_scenario, raw)
    raw["methods"] = [{"name": "x", "token_policy": "collections:OrderedDict"}]
    assert "is not a token policy: it lacks hook" in _error(write_scenario, raw)


def test_surrogate_arms_refuse_real_only_keys(write_scenario):
    raw = scenario_dict()
    raw["methods"][0]["codec"] = "os:getcwd"
    assert "arm 'dense': codec only apply to training.mode = 'real'" in _error(write_scenario, raw)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("payload_mb", 1e308, "must be at most 1e+09 MB; a larger value is a unit error"),
        ("compute_s", 1e308, "must be at most 1e+09 s"),
        ("compute_tflop", 1e308, "must be at most 1e+09 TFLOP"),
    ],
)
def test_sizes_and_costs_that_would_overflow_the_clock_fail_at_load(
    write_scenario, key, value, message
):
    raw = scenario_dict()
    raw["methods"][0] = {"name": "dense", "payload_mb": 1.0, "compute_s": 2.0}
    raw["methods"][0].pop("compute_s" if key == "compute_tflop" else key, None)
    raw["methods"][0][key] = value
    text = _error(write_scenario, raw)
    assert f"methods['dense'].{key}: {message}" in text


def test_a_population_too_large_to_build_fails_at_once(write_scenario):
    import time

    began = time.monotonic()
    text = _error(write_scenario, scenario_dict(), "population.clients=100000000")
    assert "population.clients: at most 10,000,000 clients" in text and "~36 GB" in text
    assert time.monotonic() - began < 5


def test_table_level_errors_do_not_dump_the_table(write_scenario):
    raw = scenario_dict(methods=[{"name": "a", "payload_mb": 1.0, "compute_s": 1.0}] * 2)
    text = _error(write_scenario, raw)
    assert text.endswith("scenario.toml: method names must be unique; repeated: a")
    assert "(top level)" not in text and "{" not in text


def test_empty_override_key_blames_the_override(write_scenario):
    assert "--set '=5': no key before '='" in _error(write_scenario, scenario_dict(), "=5")


# Issue 23: values `validate` passed and `run` then failed on mid-way (tracebacks, partial
# folders), or ran silently wrong; each is now refused at load naming the key and the fix.
MARKOV = {"kind": "markov", "good_mbps": 5, "bad_mbps": 1, "mean_good_s": 1, "mean_bad_s": 1}


def _edit(path: str, value: object) -> dict:
    """scenario_dict with one dotted key set (as --set would)."""
    raw = scenario_dict()
    apply_override(raw, path, value)
    return raw


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("network.uplink.mbps", 1e300, "network.uplink.mbps: must be between 1e-06 and 1e+06"),
        ("network.uplink.mbps", 1e-300, "network.uplink.mbps: must be between 1e-06"),
        ("network.downlink", {"kind": "ratio", "ratio": 1e300}, "network.downlink.ratio: must"),
        ("network.latency_ms", 1e300, "network.latency_ms: must be at most 1e+06 ms"),
        (
            "network.uplink",
            {"kind": "straggler_tail", "jitter_sigma": 1e300},
            "network.uplink.jitter_sigma: must be at most 10",
        ),
        (
            "network.uplink",
            {"kind": "straggler_tail", "pool": 2**62},
            "network.uplink.pool: Input should be less than or equal to 1000000",
        ),
        ("network.uplink", {**MARKOV, "duration_s": 1e8}, "~6.4e+09 trace samples"),
        ("devices.jetson_orin_nano.tflops", [1e300, 1e300], "tflops[0]: must be between"),
        ("methods.dense.efficiency", 1e-300, "methods['dense'].efficiency: must be between"),
        ("server", {"rounds": 3, "strategy": "overselect", "epsilon": 1e308}, "epsilon must be"),
        ("server.rounds", 10**12, "server.rounds: Input should be less than or equal to"),
        ("server.rounds", True, "server.rounds: true where a number belongs. Fix: give a number"),
        ("network.uplink.mbps", False, "network.uplink.mbps: false where a number belongs"),
        ("population.clients", 10**30, "population.clients: an integer of 31 digits does not"),
        ("methods.dense.name", "a" * 300, "String should have at most 64 characters"),
        ("evaluation.targets", [1.5], "evaluation.targets [1.5] are outside the range of accuracy"),
        ("evaluation.targets", [-3.0], "[-3.0] are outside the range of accuracy ([0, 1])"),
        ("evaluation.targets", [float("nan")], "evaluation.targets[0]: Input should be a finite"),
        ("evaluation.targets", [float("inf")], "evaluation.targets[0]: Input should be a finite"),
    ],
)
def test_implausible_numbers_fail_at_load_naming_key_and_bound(
    write_scenario, key, value, expected
):
    """Before: validate said OK (or a traceback: OverflowError, NaN times, a hang building
    2**62 traces, `rounds = true` ran 1 round, a target of -3 was reached at round 0)."""
    assert expected in _error(write_scenario, _edit(key, value))


def test_targets_follow_the_metric_range(write_scenario):
    raw = real_scenario_dict("minilm", evaluation={"metric": "loss", "targets": [0.3]})
    assert load_scenario(write_scenario(raw)).evaluation.targets == [0.3]  # a loss may be > 1
    raw["evaluation"]["targets"] = [-0.1]
    assert "outside the range of loss (>= 0)" in _error(write_scenario, raw)


def test_synthetic_data_that_cannot_fit_in_memory_is_refused(write_scenario):
    raw = real_scenario_dict("minilm")
    raw["training"]["data"] = {"kind": "synthetic", "samples": 10_000_000, "words": [100, 200]}
    message = _error(write_scenario, raw)
    assert "training.data: samples × words would generate up to 2,040,000,000 words" in message


def test_a_folder_given_as_the_scenario_is_named(tmp_path):
    with pytest.raises(ScenarioError, match="is a folder, not a scenario file. Fix: give a .toml"):
        load_scenario(tmp_path)


def test_a_scenario_saved_with_a_bom_loads(write_scenario):
    """Before: `invalid TOML: Invalid statement (at line 1, column 1)`."""
    path = write_scenario(scenario_dict())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_scenario(path).name == "unit"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = " + "[" * 100_000 + "]" * 100_000, "nested more than 32 levels deep"),
        ("x = " + "[" * 40 + "]" * 40, "x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"),
        ("x = " + "9" * 5000, "an integer of thousands of digits"),
    ],
    ids=["recursion", "deep", "digits"],
)
def test_absurd_nesting_and_integer_size_are_scenario_errors(write_scenario, text, expected):
    """Before: RecursionError and ValueError tracebacks from the TOML parser."""
    path = write_scenario(scenario_dict())
    path.write_text(path.read_text() + "\n" + text + "\n")
    with pytest.raises(ScenarioError, match=expected):
        load_scenario(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("evaluation.targets.0.x=1", "--set evaluation.targets.0.x: evaluation.targets.0 is not"),
        ("description=" + "[" * 5000 + "]" * 5000, "--set description: nested more than 32"),
        ("server.rounds=99999999999999999999", "server.rounds: an integer of 20 digits"),
    ],
    ids=["into-list", "deep", "digits"],
)
def test_set_paths_into_lists_and_absurd_values_are_scenario_errors(
    write_scenario, override, expected
):
    """Before: TypeError ('float' object does not support item assignment), RecursionError."""
    assert expected in _error(write_scenario, scenario_dict(), override)
