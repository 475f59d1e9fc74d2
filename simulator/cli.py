"""The `fstq-sim` command line: validate and run scenarios, inspect traces.

User errors (`SimulatorError`) are printed as one clear message without a traceback, exit 2.
An interrupted run keeps every finished round; `fstq-sim run --resume OUT` continues it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.errors import SimulatorError
from simulator.registry import NO_PLUGINS_ENV

if TYPE_CHECKING:
    from simulator.scenario import Scenario

EXIT_USER_ERROR = 2
SCENARIO_HELP = "scenario TOML file"
SET_HELP = "override a scenario key, e.g. --set server.rounds=10 (repeatable)"
# Each seed of a sweep is a whole run: more is a typo, and a billion seeds filled memory with
# their task list before the first one started.
MAX_SEEDS = 10_000


def _cmd_validate(args: argparse.Namespace) -> int:
    from simulator.checks import check_scenario
    from simulator.scenario import load_scenario

    scenario = load_scenario(args.scenario, args.set)
    checked = check_scenario(scenario, str(args.scenario))
    arms = ", ".join(m.name for m in scenario.methods)
    details = "".join(f"; {note}" for note in checked.notes)
    print(
        f"{args.scenario}: OK: {scenario.population.clients} clients, "
        f"{scenario.population.per_round} per round, {scenario.server.rounds} rounds "
        f"({scenario.server.strategy}), {scenario.training.mode} training{details}; arms: {arms}"
    )
    plugins = scenario.plugins()
    if plugins:  # their modules' code ran when the scenario loaded (and will in every run)
        print(f"{args.scenario}: imports code that is not built in: {', '.join(plugins)}")
    _warn(checked.warnings)
    return 0


def _warn(warnings: list[str]) -> None:
    for text in warnings:
        print(f"warning: {text}", file=sys.stderr)


def _check_arms(text: str | None, scenario: Scenario) -> list[str] | None:
    arms = text.split(",") if text else None
    unknown = sorted(set(arms or []) - {m.name for m in scenario.methods})
    if unknown:
        known = ", ".join(m.name for m in scenario.methods)
        raise SimulatorError(f"--arms: unknown arm(s) {', '.join(unknown)}; known: {known}")
    return arms


def _cache_dir(args: argparse.Namespace) -> str | None:
    """The replay cache folder the flags ask for (None: --no-cache)."""
    from simulator.cache import default_replay_dir

    if args.no_cache:
        if args.cache:
            raise SimulatorError("give --cache DIR or --no-cache, not both")
        return None
    return str(args.cache or default_replay_dir())


def _open_cache(args: argparse.Namespace, scenario: Any = None) -> Any:
    """The replay cache (checked usable before the run starts); none for a surrogate
    scenario, which trains nothing, so it never creates or needs the folder."""
    from simulator.cache import ReplayCache

    folder = _cache_dir(args)
    if folder is None or (scenario is not None and scenario.training.mode == "surrogate"):
        return None
    return ReplayCache(Path(folder))


def _run_dir(path: str, flag: str) -> Path:
    """A run directory named on the command line; a file there is a clear error (it was a
    traceback from reading the scenario inside it)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise SimulatorError(f"{flag} {folder}: is a file; give the folder a run wrote")
    return folder


def _out(text: str | None, default: Path) -> Path:
    """The --out folder, `default` when not given; an empty --out (an unset "$OUT") is an
    error, not a silent switch to the default."""
    if text == "":
        raise SimulatorError(f"--out is empty; name a folder, or leave --out out for {default}")
    return default if text is None else Path(text)


def _cmd_run(args: argparse.Namespace) -> int:
    if args.resume:
        return _resume(args)
    from simulator.checks import check_scenario
    from simulator.experiment import check_out, prepare_out, run_scenario
    from simulator.recorder import replacing
    from simulator.scenario import load_scenario

    if not args.scenario:
        raise SimulatorError("give a scenario FILE (or --resume OUT)")
    overrides = list(args.set) + ([f"seed={args.seed}"] if args.seed is not None else [])
    scenario = load_scenario(args.scenario, overrides)
    out = _out(args.out, Path("runs") / f"{scenario.name}-seed{scenario.seed}")
    arms = _check_arms(args.arms, scenario)
    checked = check_scenario(scenario, str(args.scenario))  # nothing on disk changes before
    check_out(out, args.force)
    board = _board(args)
    _warn(checked.warnings)

    def run() -> list[Path]:
        with replacing(out) as started:
            prepare_out(out, Path(args.scenario), scenario, arms)
            return run_scenario(
                scenario,
                out,
                arms=arms,
                progress=not args.quiet,
                source=str(args.scenario),
                world=checked.world,
                on_start=started,
                cache=cache,
                tensorboard=board,
            )

    cache = _open_cache(args, scenario)
    return _run_and_list(run, f"Continue with: fstq-sim run --resume {out}")


def _resume(args: argparse.Namespace) -> int:
    from simulator.experiment import load_resumable, run_scenario

    out = _run_dir(args.resume, "--resume")
    if args.scenario or args.set or args.seed is not None or args.force:
        raise SimulatorError(
            "--resume OUT takes its scenario from OUT; give no FILE, --set, --seed or --force"
        )
    scenario, arms = load_resumable(out)
    arms = _check_arms(args.arms, scenario) if args.arms else arms
    board = _board(args)
    return _run_and_list(
        lambda: run_scenario(
            scenario,
            out,
            resume=True,
            arms=arms,
            progress=not args.quiet,
            source=str(out / "scenario.json"),
            cache=_open_cache(args, scenario),
            tensorboard=board,
        ),
        f"Continue with: fstq-sim run --resume {out}",
    )


class _Terminated(Exception):
    """SIGTERM, turned into an exception so finished rounds are closed and kept."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def _run_and_list(run: Callable[[], list[Path]], resume_hint: str) -> int:
    """Run, print the folders written; on Ctrl-C or SIGTERM say that rounds are kept and how
    to go on (exit 130 / 143, as the shell reports those signals)."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        folders = run()
    except (KeyboardInterrupt, _Terminated) as exc:
        print(f"interrupted; finished rounds are kept. {resume_hint}", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    for folder in folders:
        print(f"wrote {folder}")
    return 0


def _cmd_trace_stats(args: argparse.Namespace) -> int:
    from simulator.network.traces import format_stats, load_trace, trace_stats
    from simulator.scenario import parse_override

    options = dict(parse_override(o, "--option", "rate_unit=Mbps") for o in args.option)
    for path in args.paths:
        trace = load_trace(path, format=args.format, **options)
        print(format_stats(trace_stats(trace)))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from analysis.plots import KINDS, save, writable

    if args.out:  # one figure of all the runs together
        writable(args.out, folder=False)
        print(f"wrote {save(KINDS[args.kind](args.runs, args.metric), args.out)}")
        return 0
    for run in args.runs:
        name = "quality_vs_time" if args.kind == "quality-time" else args.kind.replace("-", "_")
        out = Path(run) / f"{name}.png"
        print(f"wrote {save(KINDS[args.kind](run, args.metric), out)}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from simulator.checks import check_scenario
    from simulator.scenario import load_scenario
    from simulator.sweep import sweep

    if not 1 <= args.seeds <= MAX_SEEDS or args.jobs < 1:
        raise SimulatorError(
            f"--seeds must be 1 to {MAX_SEEDS:,} and --jobs at least 1 (got --seeds "
            f"{args.seeds}, --jobs {args.jobs})"
        )
    scenario = load_scenario(args.scenario, args.set)
    out = _out(args.out, Path("runs") / f"{scenario.name}-sweep")
    # what validate checks (the first seed's), and the cache, before any seed folder is written
    _warn(check_scenario(scenario, str(args.scenario)).warnings)
    cache = _open_cache(args, scenario)
    folder = None if cache is None else str(cache.root)
    return _run_and_list(
        lambda: sweep(args.scenario, args.seeds, out, args.set, args.jobs, folder),
        "Rerun the same command to resume.",
    )


def _cmd_replay(args: argparse.Namespace) -> int:
    """Re-time a finished real run under other settings (usually the network), reusing every
    client-round and evaluation the cache holds, and say how much was reused."""
    from simulator.checks import check_scenario
    from simulator.experiment import (
        check_out,
        load_resumable,
        prepare_out,
        run_scenario,
        verify_arms,
    )
    from simulator.recorder import read_json, replacing
    from simulator.scenario import apply_override, parse_override, scenario_from_dict

    run_dir = _run_dir(args.run, "replay")
    verify_arms(run_dir, load_resumable(run_dir)[0])  # the arms are this scenario's own
    raw = read_json(run_dir / "scenario.json")
    for item in args.set:
        apply_override(raw, *parse_override(item))
    source = str(run_dir / "scenario.json")
    scenario = scenario_from_dict(raw, source, base=run_dir)
    checked = check_scenario(scenario, source)  # the overrides, as validate checks a file
    out = Path(args.out)
    check_out(out, args.force)
    board = _board(args)
    _warn(checked.warnings)
    cache = _open_cache(args, scenario)
    if cache is None and scenario.training.mode != "surrogate":
        raise SimulatorError("replay needs the cache; drop --no-cache")

    def run() -> list[Path]:
        with replacing(out) as started:
            prepare_out(out, None, scenario)
            return run_scenario(
                scenario,
                out,
                progress=not args.quiet,
                world=checked.world,
                on_start=started,
                cache=cache,
                tensorboard=board,
            )

    code = _run_and_list(run, f"Continue with: fstq-sim run --resume {out}")
    if cache is None:  # a surrogate run recomputes everything at no cost
        return code
    stats = cache.stats
    looked = stats.hits + stats.misses
    share = 100.0 * stats.hits / looked if looked else 0.0
    print(
        f"reused {stats.hits:,} of {looked:,} client-rounds and evaluations ({share:.0f} %), "
        f"{stats.saved_host_s:.1f} host seconds saved; computed {stats.misses:,}"
    )
    return code


def _cmd_compare(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    for path in write_report(args.runs, args.out, args.baseline, args.target, args.metric):
        print(f"wrote {path}")
    return 0


def _plugin_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-plugins",
        action="store_true",
        help="refuse any component named 'package.module:Class' that is not built in, "
        "without importing it (a scenario naming one runs that module's code)",
    )


def _board(args: argparse.Namespace) -> Path | None:
    from simulator.tensorboard_events import check_folder

    return check_folder(Path(args.tensorboard)) if args.tensorboard else None


def _board_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="also write TensorBoard event files, one folder per arm (needs the tensorboard "
        "extra: pip install 'fstq-sim[tensorboard]')",
    )


def _cache_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="replay cache of real client-rounds and evaluations (default "
        "$FSTQ_SIM_REPLAY_CACHE or ~/.cache/fstq-sim/replay)",
    )
    p.add_argument("--no-cache", action="store_true", help="compute everything, store nothing")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="fstq-sim", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "validate",
        help="check a scenario without running: schema, traces, data, model, first rounds",
    )
    p.add_argument("scenario", help=SCENARIO_HELP)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    _plugin_flag(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run every arm of a scenario into a run directory")
    p.add_argument("scenario", nargs="?", help=SCENARIO_HELP + " (not with --resume)")
    p.add_argument("--out", help="run directory (default runs/<name>-seed<seed>)")
    p.add_argument("--seed", type=int, help="root seed (overrides the scenario's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument(
        "--arms",
        help="comma-separated arm names to run (default all; --resume keeps the run's own)",
    )
    p.add_argument("--resume", metavar="OUT", help="continue an interrupted run directory")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing run directory, if it holds only files fstq-sim wrote "
        "(kept until the new run has started)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _board_flag(p)
    _cache_flags(p)
    _plugin_flag(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="run every arm over several seeds (resumable)")
    p.add_argument("scenario", help=SCENARIO_HELP)
    p.add_argument("--seeds", type=int, required=True, help="seeds: the scenario's and after")
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    p.add_argument("--out", help="sweep directory (default runs/<name>-sweep)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    _cache_flags(p)
    _plugin_flag(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "replay",
        help="re-time a finished real run under other settings (e.g. --set network...), "
        "training only what the new timing changes",
    )
    p.add_argument("run", help="a run directory (its scenario.json is the starting point)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _board_flag(p)
    _cache_flags(p)
    _plugin_flag(p)
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("plot", help="one figure of run, sweep or arm directories")
    p.add_argument("runs", nargs="+", help="run, sweep or arm directories")
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
    s.add_argument("paths", nargs="+", help="trace files, read in place")
    s.add_argument(
        "--format",
        default="mahimahi",
        help="the files' format: mahimahi (default), pensieve, csv, 5gophers or "
        "package.module:Class (see traces/README.md)",
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
    previous = os.environ.get(NO_PLUGINS_ENV)
    if getattr(args, "no_plugins", False):
        os.environ[NO_PLUGINS_ENV] = "1"  # the registry reads it; worker processes inherit it
    try:
        return args.func(args)
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if previous is None:
            os.environ.pop(NO_PLUGINS_ENV, None)
        else:
            os.environ[NO_PLUGINS_ENV] = previous


if __name__ == "__main__":
    sys.exit(main())
