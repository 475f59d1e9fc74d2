"""`--set key.path=value`: parsed as TOML and applied to the raw scenario."""

from __future__ import annotations

import tomllib
from typing import Any

from simulator.errors import ScenarioError, located


def parse_override(
    text: str, flag: str = "--set", example: str = "server.rounds=10"
) -> tuple[str, Any]:
    """`key.path=value` with value parsed as TOML (strings need no quotes)."""
    if "=" not in text:
        raise ScenarioError(f"{flag} {text!r}: expected key=value, e.g. {flag} {example}")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ScenarioError(f"{flag} {text!r}: no key before '='; e.g. {flag} {example}")
    try:
        parsed = parse_toml(f"v = {value}", f"{flag} {key.strip()}")["v"]
    except ScenarioError as exc:
        if not isinstance(exc.__cause__, tomllib.TOMLDecodeError):
            raise
        parsed = value  # not TOML: a bare string
    check_size(parsed, flag, key.strip())
    return key.strip(), parsed


# TOML allows 64-bit integers; nesting beyond this depth is no scenario (and deeper ones
# exhaust the parser's recursion).
INT64 = 2**63
MAX_DEPTH = 32


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text -> dict; ScenarioError (caused by the parser's error) when it is not TOML,
    or is nested too deep or holds too long an integer for the parser."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from exc
    except RecursionError:
        raise ScenarioError(
            f"{source}: nested more than {MAX_DEPTH} levels deep. Fix: flatten the value"
        ) from None
    except ValueError:  # an integer of thousands of digits
        raise ScenarioError(
            f"{source}: an integer of thousands of digits. Fix: give numbers of at most 64 bits"
        ) from None
    return raw


def check_size(node: Any, source: str, key: str = "", depth: int = 0) -> None:
    """Refuse nesting deeper than MAX_DEPTH and integers beyond 64 bits, naming the key."""
    if depth > MAX_DEPTH:
        raise ScenarioError(
            located(source, key, f"nested more than {MAX_DEPTH} levels deep", "flatten it")
        )
    if isinstance(node, int) and not isinstance(node, bool) and not -INT64 <= node < INT64:
        raise ScenarioError(
            located(
                source,
                key or None,
                f"an integer of {len(str(abs(node)))} digits does not fit in 64 bits",
                "give a plausible number",
            )
        )
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for name, value in items:
        check_size(value, source, f"{key}.{name}" if key else str(name), depth + 1)


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key in the raw scenario; `methods.NAME.key` addresses an arm by name."""
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        where = ".".join(parts[: i + 1])
        node = (
            _list_item(node, part, where) if isinstance(node, list) else node.setdefault(part, {})
        )
        if not isinstance(node, dict | list):
            raise ScenarioError(f"--set {key}: {where} is not a table")
    if isinstance(node, list):
        raise ScenarioError(f"--set {key}: name a key inside the list item, e.g. methods.fedavg.x")
    node[parts[-1]] = value


def _list_item(items: list[Any], part: str, where: str) -> Any:
    if part.isdigit() and int(part) < len(items):
        return items[int(part)]
    for item in items:
        if isinstance(item, dict) and item.get("name") == part:
            return item
    names = [str(i.get("name")) for i in items if isinstance(i, dict)]
    raise ScenarioError(f"--set {where}: no item {part!r}; known: {', '.join(names)}")
