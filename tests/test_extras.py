"""The light install: surrogate runs, trace tools and analysis import none of the train or Ray
extras' modules, and a scenario that needs an extra is refused at validation with the command
that installs it. Each case runs the CLI in a fresh interpreter whose packages are this
environment's less the extras' (a folder of links to the others, with site processing off)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, TRACES, scenario_dict

from simulator.extras import EXTRAS, hint, missing

# the extras' modules and the compiled packages they bring
ABSENT = {name for modules in EXTRAS.values() for name in modules} | {"llvmlite"}


@pytest.fixture(scope="module")
def light_site(tmp_path_factory) -> Path:
    """A folder of links to every installed package except the extras'."""
    folder = tmp_path_factory.mktemp("light-site")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        top = re.split(r"[-.]", entry.name, maxsplit=1)[0].lower()
        if top not in ABSENT and not entry.name.endswith(".pth"):
            (folder / entry.name).symlink_to(entry)
    return folder


def cli_without_extras(light_site: Path, *args: str) -> subprocess.CompletedProcess:
    """`fstq-sim ARGS` in a fresh interpreter that has no extra's module."""
    code = (
        "import sys\n"
        "from simulator.cli import main\n"
        "code = main(sys.argv[1:])\n"
        f"leaked = sorted(set(sys.modules) & {ABSENT!r})\n"
        "sys.exit(f'imported {leaked}' if leaked else code)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{PROJECT_ROOT}{os.pathsep}{light_site}")
    return subprocess.run(
        [sys.executable, "-S", "-c", code, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_surrogate_run_trace_tools_and_analysis_need_no_extra(light_site, write_scenario, tmp_path):
    raw = scenario_dict()
    raw["network"]["uplink"] = {"kind": "trace", "format": "mahimahi", "files": ["*.up"]}
    raw["network"]["trace_dir"] = str(TRACES / "mahimahi")
    path, out = str(write_scenario(raw)), str(tmp_path / "run")
    for args in (
        ["validate", path],
        ["run", path, "--out", out, "--quiet"],
        ["traces", "stats", str(TRACES / "mahimahi" / "Verizon-LTE-short.up")],
        ["plot", out],
        ["compare", out, "--baseline", "dense", "--target", "0.5", "--out", f"{out}/report"],
    ):
        done = cli_without_extras(light_site, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert (tmp_path / "run" / "dense" / "summary.json").is_file()
    assert (tmp_path / "run" / "report" / "report.md").is_file()


def test_real_mode_scenario_names_the_train_extra(light_site):
    done = cli_without_extras(
        light_site, "validate", str(PROJECT_ROOT / "scenarios" / "quickstart.toml")
    )
    assert done.returncode == 2
    assert "training.mode = 'real' needs torch, transformers, peft, numba" in done.stderr
    assert "pip install 'fstq-sim[train]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_installed_extras_are_found_and_hints_name_their_extra():
    assert missing("train") == []  # the development install has every extra
    assert hint("numba.core") == "; it comes with the train extra: pip install 'fstq-sim[train]'"
    assert hint("ray") == "; it comes with the ray extra: pip install 'fstq-sim[ray]'"
    assert hint("yaml") == ""


def test_a_codec_module_missing_its_extra_names_it(light_site):
    code = (
        "from simulator.methods.registry import CODECS\n"
        "try:\n"
        "    CODECS.resolve('fp16')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{PROJECT_ROOT}{os.pathsep}{light_site}")
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "cannot import codec" in done.stdout and "No module named 'numba'" in done.stdout
    assert "pip install 'fstq-sim[train]'" in done.stdout
