"""Error text: pydantic errors rendered as `file: dotted.key: problem. Fix: fix`."""

from __future__ import annotations

from typing import Any

from simulator.errors import located

_FIXES = {"extra_forbidden": "remove it or check its spelling", "missing": "add it"}


def _branch_tags(node: dict[str, Any]) -> tuple[Any, ...]:
    """The discriminator values of a union member (pydantic puts them in error locations)."""
    return node.get("kind"), node.get("mode")


def _key(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """Dotted key; list positions of methods are shown by arm name when it is known."""
    parts: list[str] = []
    node: Any = raw
    for i, item in enumerate(loc):
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            name = node[item].get("name") if isinstance(node[item], dict) else None
            parts[-1] += f"[{_short(repr(name), 40)}]" if name else f"[{item}]"
            node = node[item]
            continue
        tag = isinstance(node, dict) and item in _branch_tags(node)
        if tag and (item not in node or loc[i + 1 : i + 2] == (item,)):
            continue  # discriminated-union branch name (kind = "ratio" has a key ratio), not a key
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def describe_error(err: dict[str, Any], raw: dict[str, Any], source: str) -> str:
    key = _key(tuple(err["loc"]), raw)
    kind, ctx = err["type"], err.get("ctx", {})
    fix = _FIXES.get(kind)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx["discriminator"].strip("'")  # the key that picks the branch: kind, mode, ...
        key = f"{key}.{tag}" if key else tag
        if "tag" in ctx:
            problem, fix = f"unknown {tag} {ctx['tag']!r}", f"use one of {ctx['expected_tags']}"
        else:
            problem, fix = "missing", "add it"
    elif kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "missing":
        problem = err["msg"]
    elif isinstance(err.get("input"), bool) and kind in ("int_type", "float_type"):
        problem, fix = f"{str(err['input']).lower()} where a number belongs", "give a number"
    else:
        problem = err["msg"].removeprefix("Value error, ")
        if not isinstance(err.get("input"), dict | list):  # a table's checks name their keys
            problem += f" (got {_short(repr(err.get('input')))})"
    return located(source, key or None, problem, fix)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
