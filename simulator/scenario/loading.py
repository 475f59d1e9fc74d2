"""Loading: TOML file -> overrides -> paths -> validated, frozen Scenario; resolved dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simulator.errors import ScenarioError, located
from simulator.registry import validate_options
from simulator.scenario.messages import describe_error
from simulator.scenario.overrides import apply_override, check_size, parse_override, parse_toml
from simulator.scenario.paths import CWD_PATHS, resolve_paths
from simulator.scenario.schema import Scenario
from simulator.server.strategies import DEFAULT_STRATEGY, STRATEGIES


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, override and validate a scenario file."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise ScenarioError(
            located(source, None, "is a folder, not a scenario file", "give a .toml file")
        )
    try:
        raw = parse_toml(path.read_bytes().decode("utf-8-sig"), source)  # an editor's BOM is fine
        check_size(raw, source)
    except FileNotFoundError:
        raise ScenarioError(f"{source}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot be read ({exc.strerror})") from None
    for item in overrides:
        key, value = parse_override(item)
        if key in CWD_PATHS and isinstance(value, str):
            value = str(Path(value).resolve())  # typed on a command line: from the shell's folder
        apply_override(raw, key, value)
    return scenario_from_dict(raw, source, base=path.resolve().parent)


def scenario_from_dict(raw: dict[str, Any], source: str, base: Path) -> Scenario:
    """Validate an already-parsed scenario mapping."""
    resolve_paths(raw, base, source)
    lines = _strategy_errors(raw, source)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if lines:  # the strategy's own errors, with their keys, replace the section's summary
            errors = [e for e in errors if e["loc"][:1] != ("server",)]
        lines += [describe_error(e, raw, source) for e in errors]
    if lines:
        raise ScenarioError("\n".join(lines))
    return scenario


def _strategy_errors(raw: dict[str, Any], source: str) -> list[str]:
    """The [server] section's strategy name and options, checked against the strategy class
    so that each error names its key (`server.deadline_s`), as for built-in sections."""
    server = raw.get("server")
    if not isinstance(server, dict) or not isinstance(server.get("strategy", ""), str):
        return []  # the schema reports it
    name = server.get("strategy", DEFAULT_STRATEGY)
    if name not in STRATEGIES.builtins and ":" not in name:
        known = ", ".join(map(repr, STRATEGIES.builtins))
        fix = f"use one of {known} or 'package.module:Class'"
        return [located(source, "server.strategy", f"unknown strategy {name!r}", fix)]
    try:
        cls = STRATEGIES.resolve(name)
        validate_options(cls, {k: v for k, v in server.items() if k not in ("rounds", "strategy")})
    except ValueError as exc:
        if not isinstance(exc, ValidationError):
            return [located(source, "server.strategy", str(exc))]
        return [
            describe_error({**e, "loc": ("server", *e["loc"])}, raw, source) for e in exc.errors()
        ]
    return []


def resolved_dict(scenario: Scenario) -> dict[str, Any]:
    """A JSON-safe dict of the scenario with every default filled in."""
    return scenario.model_dump(mode="json")
