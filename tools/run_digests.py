"""Digests of what shipped scenarios write, to show a refactoring changed no output byte.

    python tools/run_digests.py --out before.json            # on the old code
    python tools/run_digests.py --out after.json --against before.json

Runs every surrogate scenario under scenarios/ and the quickstart (real training) into a
temporary folder and records the sha256 of every CSV of every arm (rounds, clients, evals,
partition). With --against it lists every file whose digest differs, or that one side lacks,
and exits 1 if there is any. Host-dependent files (manifest.json, timings) are not compared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import tomllib
from pathlib import Path

from simulator.experiment import prepare_out, run_scenario
from simulator.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
REAL = ("quickstart.toml",)  # the real-training scenarios digested as well


def default_scenarios() -> list[Path]:
    """Every surrogate scenario, then the quickstart."""
    surrogate = [
        path
        for path in sorted(SCENARIOS.glob("*.toml"))
        if tomllib.loads(path.read_text(encoding="utf-8"))["training"].get("mode") != "real"
    ]
    return surrogate + [SCENARIOS / name for name in REAL]


def digest_run(scenario_file: Path, out: Path, overrides: list[str]) -> dict[str, str]:
    """Run a scenario into out; the sha256 of each arm's CSVs, by arm/file."""
    scenario = load_scenario(scenario_file, overrides)
    prepare_out(out, scenario_file, scenario)
    run_scenario(scenario, out, progress=False, source=str(scenario_file))
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.glob("*/*.csv"))
    }


def differences(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """One line per scenario file that differs or exists on one side only."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name, {}), after.get(name, {})
        lines += [
            f"{name}: {file}: {'differs' if file in old and file in new else 'only one side'}"
            for file in sorted(old.keys() | new.keys())
            if old.get(file) != new.get(file)
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file of the digests")
    parser.add_argument("--against", help="digests of the old code to compare with")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for every run")
    parser.add_argument("scenarios", nargs="*", help="scenario files (default: see above)")
    args = parser.parse_args(argv)
    files = [Path(s) for s in args.scenarios] or default_scenarios()
    digests = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            print(f"running {path.name}", flush=True)
            digests[path.name] = digest_run(path, Path(tmp) / path.stem, args.set)
    Path(args.out).write_text(json.dumps(digests, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {sum(map(len, digests.values()))} files of {len(files)} scenarios")
    if args.against is None:
        return 0
    lines = differences(json.loads(Path(args.against).read_text(encoding="utf-8")), digests)
    print("\n".join(lines) or "identical: every CSV has the same bytes")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
