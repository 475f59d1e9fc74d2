"""Same-minute A/B of a benchmark script between two checkouts, to show a change is not slower.

    python tools/ab_bench.py --before ../before --script bench/engine.py --field host_seconds_median

Runs the script alternately in the old checkout and in this one (`--pairs` times, old first,
each in a fresh interpreter with that checkout first on sys.path), reads the JSON each run
writes under its checkout's bench/results/, and prints every pair and the median of the
per-pair ratios new / old of `--field` (for a time: below 1 is faster). Alternating pairs share
the machine's load of that minute, so the ratio is fairer than two numbers taken apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run_once(tree: Path, script: str, field: str) -> float:
    """Run script in tree; the field of the JSON it wrote."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, script], cwd=tree, env=env, check=True, capture_output=True)
    name = Path(script).stem
    data = json.loads((tree / "bench" / "results" / f"{name}.json").read_text(encoding="utf-8"))
    return float(data[field])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the old checkout (e.g. a git worktree)")
    parser.add_argument("--script", default="bench/engine.py")
    parser.add_argument("--field", default="host_seconds_median")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    before = Path(args.before).resolve()
    ratios = []
    print(f"{'pair':>4} {'before':>10} {'after':>10} {'after/before':>13}")
    for pair in range(1, args.pairs + 1):
        old = run_once(before, args.script, args.field)
        new = run_once(HERE, args.script, args.field)
        ratios.append(new / old)
        print(f"{pair:>4} {old:>10.3f} {new:>10.3f} {new / old:>13.3f}")
    print(f"median after/before of {args.field}: {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
