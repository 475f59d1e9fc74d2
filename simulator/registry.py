"""One registry mechanism for every extension point: built-in names and `package.module:Class`.

A scenario names an extension (`codec = "qsgd"`, `server_optimizer = "fedadam"`) with options
(`codec_options = { bits = 4 }`). Each registry maps its built-in names to `module:Class`
paths; any other name of the form `package.module:Class` is imported and used the same way.
Every class declares its options as a pydantic model `Options` (none: `NoOptions`, which
refuses any option), validated when the scenario loads, so a misspelt option or a class that
lacks a member of its kind's protocol fails before anything runs, naming the fix.

Importing a module runs its code: a scenario that names `package.module:Class` is code, like a
Python script. The name's shape is checked before anything is imported, and with plugins off
(`--no-plugins`, or the environment variable FSTQ_SIM_NO_PLUGINS=1, which worker processes
inherit) any name that is not built in is refused without importing it.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from simulator.extras import hint

NO_PLUGINS_ENV = "FSTQ_SIM_NO_PLUGINS"

# dotted.module.path:ClassName, identifiers only: no paths, calls or spaces reach importlib
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*", re.ASCII)


class NoOptions(BaseModel):
    """For classes without options: any given option is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def plugins_allowed() -> bool:
    """Whether names that are not built in may be imported (off under --no-plugins)."""
    return os.environ.get(NO_PLUGINS_ENV, "") in ("", "0")


def _no_gaps(cls: type) -> list[str]:
    return []


@dataclass(frozen=True)
class Registry:
    """The classes of one kind of extension.

    what: the kind, as errors name it ("codec"). builtins: name → "module:Class".
    members: what a class must provide (its protocol's names; a base class's `abstractmethod`
    left unimplemented counts as missing too). protocol: where that protocol is documented, for the
    error text. gaps: what else a class lacks that depends on the class itself (e.g. a
    synchronous strategy's `close`), as names for the error text.
    """

    what: str
    builtins: dict[str, str]
    members: tuple[str, ...]
    protocol: str
    gaps: Callable[[type], list[str]] = _no_gaps

    def is_builtin(self, name: str) -> bool:
        """A built-in name, or the import path of a built-in class."""
        return name in self.builtins or name in self.builtins.values()

    def resolve(self, name: str, what: str | None = None) -> type:
        """The class a name refers to; ValueError (shown as a scenario error) when unknown,
        malformed, refused (plugins off) or not a class with this kind's whole protocol.
        `what` renames the kind in errors (e.g. "downlink codec" for the codec registry)."""
        what = what or self.what
        target = self.builtins.get(name, name)
        if ":" not in target:
            known = ", ".join(self.builtins)
            raise ValueError(
                f"unknown {what} {name!r}; use one of {known} or 'package.module:Class'"
            )
        if not IMPORT_PATH.fullmatch(target):
            raise ValueError(
                f"{what} {target!r} is not of the form 'package.module:Class' (dotted "
                "identifiers, a colon, a class name); nothing was imported"
            )
        if not self.is_builtin(target) and not plugins_allowed():
            raise ValueError(
                f"{what} {target!r} is not built in, and plugins are off (--no-plugins): it "
                f"was not imported. Fix: use one of {', '.join(self.builtins)}, or allow "
                "plugins if you trust that module's code"
            )
        module_name, _, attr = target.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            extra = hint(exc.name or "") if isinstance(exc, ImportError) else ""
            raise ValueError(f"cannot import {what} {target!r}: {exc}{extra}") from None
        if not isinstance(found, type):
            raise ValueError(
                f"{what} {target!r} is a {type(found).__name__}, not a class; name a class "
                f"that provides {', '.join(self.members)} (see {self.protocol})"
            )
        missing = [m for m in self.members if not hasattr(found, m)]
        missing += [m for m in _abstract(found) if m not in missing] + self.gaps(found)
        if missing:
            raise ValueError(
                f"{what} {target!r} is not a {what}: it lacks {', '.join(missing)} "
                f"(see {self.protocol})"
            )
        return found

    def build(self, name: str, options: dict[str, Any] | None = None) -> Any:
        """An instance of the named class configured with its validated options."""
        cls = self.resolve(name)
        return cls(validate_options(cls, options or {}))


def _abstract(cls: type) -> list[str]:
    """Members left as a base class's `abstractmethod` stub (they would fail mid-run)."""
    return [m for m in dir(cls) if getattr(getattr(cls, m, None), "__isabstractmethod__", False)]


def validate_options(cls: type, options: dict[str, Any]) -> BaseModel:
    """The class's options, validated (pydantic ValidationError when wrong)."""
    return getattr(cls, "Options", NoOptions).model_validate(options)
