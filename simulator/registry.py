"""One registry mechanism for every extension point: built-in names and `package.module:Class`.

A scenario names an extension (`codec = "qsgd"`, `server_optimizer = "fedadam"`) with options
(`codec_options = { bits = 4 }`). Each registry maps its built-in names to `module:Class`
paths; any other name of the form `package.module:Class` is imported and used the same way.
Every class declares its options as a pydantic model `Options` (none: `NoOptions`, which
refuses any option), validated when the scenario loads, so a misspelt option or a class that
lacks a member of its kind's protocol fails before anything runs, naming the fix.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from simulator.extras import hint


class NoOptions(BaseModel):
    """For classes without options: any given option is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Registry:
    """The classes of one kind of extension.

    what: the kind, as errors name it ("codec"). builtins: name → "module:Class".
    members: what a class must provide (its protocol's names). protocol: where that protocol
    is documented, for the error text.
    """

    what: str
    builtins: dict[str, str]
    members: tuple[str, ...]
    protocol: str

    def resolve(self, name: str, what: str | None = None) -> type:
        """The class a name refers to; ValueError (shown as a scenario error) when unknown or
        when it is not a class with this kind's members. `what` renames the kind in errors
        (e.g. "downlink codec" for the codec registry)."""
        what = what or self.what
        target = self.builtins.get(name, name)
        if ":" not in target:
            known = ", ".join(self.builtins)
            raise ValueError(
                f"unknown {what} {name!r}; use one of {known} or 'package.module:Class'"
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
        missing = [member for member in self.members if not hasattr(found, member)]
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


def validate_options(cls: type, options: dict[str, Any]) -> BaseModel:
    """The class's options, validated (pydantic ValidationError when wrong)."""
    return getattr(cls, "Options", NoOptions).model_validate(options)
