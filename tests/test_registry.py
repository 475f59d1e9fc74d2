"""The one registry mechanism: built-in names, `package.module:Class`, members, options."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import scenario_dict
from pydantic import ValidationError

from simulator.cli import build_parser, main
from simulator.errors import ScenarioError
from simulator.methods.registry import CODECS, TOKEN_POLICIES, check_codec_ids
from simulator.registry import NO_PLUGINS_ENV, NoOptions, Registry
from simulator.scenario import load_scenario
from simulator.server.optimizers import OPTIMIZERS
from simulator.server.strategies import STRATEGIES

REGISTRIES = (CODECS, TOKEN_POLICIES, OPTIMIZERS)


@pytest.mark.parametrize("kind", REGISTRIES, ids=lambda r: r.what)
def test_every_builtin_resolves_with_its_members(kind):
    for name in kind.builtins:
        cls = kind.resolve(name)
        assert all(hasattr(cls, member) for member in kind.members)


def test_an_import_path_resolves_like_a_builtin():
    assert CODECS.resolve("simulator.methods.qsgd:QSGD") is CODECS.resolve("qsgd")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown thing 'nope'; use one of a or 'package.module:Class'"),
        ("no_such_module:X", "cannot import thing 'no_such_module:X'"),
        ("os:getcwd", "is a builtin_function_or_method, not a class"),
        ("collections:OrderedDict", "is not a thing: it lacks run (see here.py)"),
    ],
)
def test_what_is_not_a_member_of_the_kind_fails_with_the_fix(name, message):
    kind = Registry("thing", {"a": "collections:Counter"}, ("run",), "here.py")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kind.resolve(name)


def test_options_are_validated_and_a_class_without_options_refuses_any():
    with pytest.raises(ValidationError):
        CODECS.build("qsgd", {"bitz": 4})
    with pytest.raises(ValidationError):
        CODECS.build("fp16", {"anything": 1})
    assert CODECS.resolve("fp16").Options is NoOptions


def test_every_builtin_codec_has_its_own_codec_id():
    check_codec_ids([CODECS.resolve(name) for name in CODECS.builtins])
    ids = [CODECS.resolve(name).codec_id for name in CODECS.builtins]
    assert len(set(ids)) == len(ids)


def test_two_codec_classes_sharing_an_id_are_refused():
    class Twin(CODECS.resolve("qsgd")):  # a different class, the same codec_id
        pass

    check_codec_ids([CODECS.resolve("qsgd"), CODECS.resolve("qsgd")])  # one class twice is fine
    with pytest.raises(ValueError, match="share codec_id 3"):
        check_codec_ids([CODECS.resolve("qsgd"), Twin])


# Issue 23: a component named `package.module:Class` is checked against its kind's whole
# protocol when the scenario loads, its name's shape before any import, and --no-plugins
# refuses it without importing it.
PLUGIN = """
import pathlib
from simulator.server.strategies import FedBuff, RoundStrategy, Strategy, Sync

pathlib.Path(__file__).with_suffix(".ran").write_text("imported")  # top-level code runs

class Fastest(Sync):
    name = "fastest"

class NoClose(RoundStrategy):
    name = "noclose"

class NotARound(Strategy):
    name = "notaround"

    def close(self, start, plans):
        return None

class NotABuffer(Strategy):
    name = "notabuffer"
    asynchronous = True
"""


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """An importable module `fstqplug` whose top-level code leaves fstqplug.ran behind."""
    (tmp_path / "fstqplug.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fstqplug", raising=False)
    return tmp_path / "fstqplug.ran"


@pytest.mark.parametrize(
    ("cls", "lacks"),
    [
        ("NoClose", "close"),
        ("NotARound", "RoundStrategy as a base class"),
        ("NotABuffer", "FedBuff as a base class"),
    ],
)
def test_a_strategy_missing_part_of_its_protocol_fails_at_load(write_scenario, plugin, cls, lacks):
    """Before: NoClose loaded and the run died mid-way (NotImplementedError, AssertionError)."""
    raw = scenario_dict(server={"rounds": 3, "strategy": f"fstqplug:{cls}"})
    with pytest.raises(ScenarioError, match=f"server.strategy: .* it lacks {lacks} "):
        load_scenario(write_scenario(raw))


def test_a_whole_plugin_loads_and_validate_lists_it(write_scenario, plugin, capsys):
    path = write_scenario(scenario_dict(server={"rounds": 3, "strategy": "fstqplug:Fastest"}))
    assert load_scenario(path).plugins() == ["fstqplug:Fastest"]
    assert main(["validate", str(path)]) == 0
    assert f"{path}: imports code that is not built in: fstqplug:Fastest" in capsys.readouterr().out
    assert plugin.exists()


@pytest.mark.parametrize("name", ["os.system('x'):X", "fstqplug:Fastest()", "../fstqplug:X"])
def test_a_name_of_the_wrong_shape_is_refused_before_any_import(name, plugin):
    with pytest.raises(ValueError, match="is not of the form 'package.module:Class'"):
        STRATEGIES.resolve(name)
    assert not plugin.exists()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_no_plugins_refuses_a_plugin_without_importing_it(
    write_scenario, plugin, tmp_path, capsys, command
):
    path = str(write_scenario(scenario_dict(server={"rounds": 3, "strategy": "fstqplug:Fastest"})))
    out = tmp_path / "out"
    extra = ["--out", str(out), "--quiet"] if command == "run" else []
    assert main([command, path, "--no-plugins", *extra]) == 2
    err = capsys.readouterr().err
    assert "strategy 'fstqplug:Fastest' is not built in, and plugins are off" in err
    assert not plugin.exists() and not out.exists()
    assert NO_PLUGINS_ENV not in os.environ  # the switch ends with the command


def test_no_plugins_keeps_built_ins_and_every_command_that_loads_has_it(write_scenario):
    path = str(
        write_scenario(scenario_dict(server={"rounds": 3, "strategy": "deadline", "deadline_s": 9}))
    )
    assert main(["validate", path, "--no-plugins"]) == 0
    assert CODECS.is_builtin("simulator.methods.qsgd:QSGD") and CODECS.is_builtin("qsgd")
    parser = build_parser()
    for argv in (["run", path], ["sweep", path, "--seeds", "1"], ["replay", "R", "--out", "O"]):
        assert parser.parse_args([*argv, "--no-plugins"]).no_plugins
