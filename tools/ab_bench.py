"""Same-minute A/B of a benchmark script between two checkouts, to show a change is not slower.

    python tools/ab_bench.py --before ../before --script bench/engine.py --field host_seconds_median

Runs the script alternately in the old checkout and in this one (`--pairs` times, old first,
each in a fresh interpreter with that checkout first on sys.path), reads the JSON each run
writes under its checkout's bench/results/, and prints every pair and the median of the
per-pair ratios new / old of `--field` (for a time: below 1 is faster). `--save FILE` also
writes them as JSON with the command and the old commit (bench/llm.py's A/B stage reads it).
Alternating pairs share the machine's load of that minute, so the ratio is fairer than two
numbers taken apart.
`--args` go to the script on both sides, `--after-args` to this checkout's run only (e.g. an
option the old checkout does not have). The script must exist in both checkouts: copy a newer
script into the old one when it predates it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run_once(tree: Path, script: str, field: str, args: list[str]) -> float:
    """Run script (with args) in tree; the field of the JSON it wrote."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run(
        [sys.executable, script, *args], cwd=tree, env=env, check=True, capture_output=True
    )
    name = Path(script).stem
    data = json.loads((tree / "bench" / "results" / f"{name}.json").read_text(encoding="utf-8"))
    return float(data[field])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the old checkout (e.g. a git worktree)")
    parser.add_argument("--script", default="bench/engine.py")
    parser.add_argument("--field", default="host_seconds_median")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--args", default="", help="arguments of the script, both sides")
    parser.add_argument(
        "--after-args", default="", help="further arguments, this checkout only (a new option)"
    )
    parser.add_argument("--save", type=Path, help="write the pairs and their median as JSON here")
    args = parser.parse_args(argv)
    both = shlex.split(args.args)
    after = [*both, *shlex.split(args.after_args)]
    before = Path(args.before).resolve()
    ratios, pairs = [], []
    print(f"{'pair':>4} {'before':>10} {'after':>10} {'after/before':>13}")
    for pair in range(1, args.pairs + 1):
        old = run_once(before, args.script, args.field, both)
        new = run_once(HERE, args.script, args.field, after)
        ratios.append(new / old)
        pairs.append({"before": old, "after": new, "ratio": round(new / old, 3)})
        print(f"{pair:>4} {old:>10.3f} {new:>10.3f} {new / old:>13.3f}")
    median = round(statistics.median(ratios), 3)
    print(f"median after/before of {args.field}: {median:.3f}")
    if args.save:
        argv_text = shlex.join(sys.argv[1:] if argv is None else argv)
        result = {
            "command": f"python tools/ab_bench.py {argv_text}",
            "before": _describe(before),
            "field": args.field,
            "pairs": pairs,
            "ratio_median": median,
            "ratio_range": [min(p["ratio"] for p in pairs), max(p["ratio"] for p in pairs)],
        }
        args.save.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _describe(tree: Path) -> str:
    """The old checkout's commit, as `git describe` would name it (or its path without git)."""
    found = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return found.stdout.strip() or str(tree)


if __name__ == "__main__":
    raise SystemExit(main())
