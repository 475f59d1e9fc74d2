"""The `fstq-sim` command line: validate and run scenarios, inspect traces.

User errors (`SimulatorError`) are printed as one clear message without a traceback, exit 2.
An interrupted run keeps every finished round; `fstq-sim run --resume OUT` continues it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from simulator.errors import SimulatorError

if TYPE_CHECKING:
    from simulator.scenario import Scenario

EXIT_USER_ERROR = 2


def _cmd_validate(args: argparse.Namespace) -> int:
    from simulator.engine import build_world
    from simulator.scenario import load_scenario

    scenario = load_scenario(args.scenario, args.set)
    build_world(scenario, str(args.scenario))  # loads every trace: bad files fail here too
    arms = ", ".join(m.name for m in scenario.methods)
    data = _check_training(scenario)
    print(
        f"{args.scenario}: OK: {scenario.population.clients} clients, "
        f"{scenario.population.per_round} per round, {scenario.server.rounds} rounds "
        f"({scenario.server.strategy}), {scenario.training.mode} training{data}, arms: {arms}"
    )
    return 0


def _check_training(scenario: Scenario) -> str:
    """Real training: resolve the model, load and partition the data (bad input fails here,
    before a run directory is touched); a short description of it."""
    if scenario.training.mode != "real":
        return ""
    from simulator.training.data import load_data
    from simulator.training.models import resolve_model
    from simulator.training.partition import partition

    spec = scenario.training
    resolve_model(spec.model)
    data = load_data(spec.data, spec.task, scenario.seed)
    parts = partition(spec.partition, data, scenario.population.clients, scenario.seed)
    sizes = [len(p) for p in parts]
    return (
        f" of {spec.model} on {len(data.train)} examples ({len(data.validation)} held out, "
        f"{min(sizes)}-{max(sizes)} per client)"
    )


def _check_arms(text: str | None, scenario: Scenario) -> list[str] | None:
    arms = text.split(",") if text else None
    unknown = sorted(set(arms or []) - {m.name for m in scenario.methods})
    if unknown:
        known = ", ".join(m.name for m in scenario.methods)
        raise SimulatorError(f"--arms: unknown arm(s) {', '.join(unknown)}; known: {known}")
    return arms


def _cmd_run(args: argparse.Namespace) -> int:
    from simulator.experiment import load_resumable, prepare_out, run_scenario
    from simulator.scenario import load_scenario

    if args.resume:
        out = Path(args.resume)
        if args.scenario or args.set or args.seed is not None:
            raise SimulatorError(
                "--resume OUT takes its scenario from OUT; give no FILE, --set or --seed"
            )
        scenario = load_resumable(out)
        source = str(out / "scenario.json")
    else:
        if not args.scenario:
            raise SimulatorError("give a scenario FILE (or --resume OUT)")
        overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
        scenario = load_scenario(args.scenario, overrides)
        out = Path(args.out) if args.out else Path("runs") / f"{scenario.name}-seed{scenario.seed}"
        _check_arms(args.arms, scenario)
        _check_training(scenario)
        prepare_out(out, Path(args.scenario), scenario, args.force)
        source = str(args.scenario)
    arms = _check_arms(args.arms, scenario)
    return _run_and_list(
        lambda: run_scenario(
            scenario,
            out,
            resume=bool(args.resume),
            arms=arms,
            progress=not args.quiet,
            source=source,
        ),
        f"Continue with: fstq-sim run --resume {out}",
    )


def _run_and_list(run: Callable[[], list[Path]], resume_hint: str) -> int:
    """Run, print the folders written; on Ctrl-C say that rounds are kept and how to go on."""
    try:
        folders = run()
    except KeyboardInterrupt:
        print(f"interrupted; finished rounds are kept. {resume_hint}", file=sys.stderr)
        return 130
    for folder in folders:
        print(f"wrote {folder}")
    return 0


def _cmd_trace_stats(args: argparse.Namespace) -> int:
    from simulator.network.traces import format_stats, load_trace, trace_stats
    from simulator.scenario import parse_override

    options = dict(parse_override(o) for o in args.option)
    for path in args.paths:
        trace = load_trace(path, format=args.format, **options)
        print(format_stats(trace_stats(trace)))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from analysis.plots import KINDS, save

    if args.out:  # one figure of all the runs together
        print(f"wrote {save(KINDS[args.kind](args.runs, args.metric), args.out)}")
        return 0
    for run in args.runs:
        name = "quality_vs_time" if args.kind == "quality-time" else args.kind.replace("-", "_")
        out = Path(run) / f"{name}.png"
        print(f"wrote {save(KINDS[args.kind](run, args.metric), out)}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from simulator.scenario import load_scenario
    from simulator.sweep import sweep

    if args.seeds < 1 or args.jobs < 1:
        raise SimulatorError("--seeds and --jobs must be at least 1")
    name = load_scenario(args.scenario, args.set).name
    out = Path(args.out) if args.out else Path("runs") / f"{name}-sweep"
    return _run_and_list(
        lambda: sweep(args.scenario, args.seeds, out, args.set, args.jobs),
        "Rerun the same command to resume.",
    )


def _cmd_compare(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    for path in write_report(args.runs, args.out, args.baseline, args.target, args.metric):
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="fstq-sim", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a scenario file (and its traces) without running")
    p.add_argument("scenario")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run every arm of a scenario into a run directory")
    p.add_argument("scenario", nargs="?")
    p.add_argument("--out", help="run directory (default runs/<name>-seed<seed>)")
    p.add_argument("--seed", type=int, help="root seed (overrides the scenario's)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key, e.g. --set server.rounds=10",
    )
    p.add_argument("--arms", help="comma-separated arm names to run (default all)")
    p.add_argument("--resume", metavar="OUT", help="continue an interrupted run directory")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="run every arm over several seeds (resumable)")
    p.add_argument("scenario")
    p.add_argument("--seeds", type=int, required=True, help="seeds: the scenario's and after")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    p.add_argument("--out", help="sweep directory (default runs/<name>-sweep)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("plot", help="one figure of run, sweep or arm directories")
    p.add_argument("runs", nargs="+")
    p.add_argument(
        "--kind",
        default="quality-time",
        choices=["quality-time", "quality-bytes", "round-cdf", "timeline", "bits"],
        help="quality vs simulated time or uplink bytes, round-duration CDF, client timeline, "
        "bits per parameter (default quality-time)",
    )
    p.add_argument(
        "--out",
        help="PNG or SVG path of one figure of all RUNs (default RUN/<kind>.png per RUN, "
        "RUN/quality_vs_time.png for quality-time)",
    )
    p.add_argument("--metric", help="metric to plot (default the first evaluated)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("compare", help="report comparing arms against a baseline arm")
    p.add_argument("runs", nargs="+", help="run, sweep or arm directories")
    p.add_argument("--baseline", required=True, help="arm the ratios are taken against")
    p.add_argument("--target", required=True, type=float, help="quality target of --metric")
    p.add_argument("--metric", help="metric of the target (default the first evaluated)")
    p.add_argument("--out", required=True, help="folder for report.md, report.html, figures")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("traces", help="bandwidth trace tools")
    tsub = p.add_subparsers(dest="traces_command", required=True)
    s = tsub.add_parser("stats", help="mean/median/p10/p90 and duration of trace files")
    s.add_argument("paths", nargs="+")
    s.add_argument(
        "--format", default="mahimahi", choices=["mahimahi", "pensieve", "csv", "5gophers"]
    )
    s.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, e.g. --option rate_unit=Mbps",
    )
    s.set_defaults(func=_cmd_trace_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
