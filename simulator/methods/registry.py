"""Codecs and token policies by name: the built-ins and any `package.module:Class`.

A scenario names a codec (`codec = "qsgd"`) with options (`codec_options = { bits = 4 }`) and a
token policy (`token_policy = "fisher"`) with options. Each class declares its options as a
pydantic model `Options`; they are validated when the scenario loads, so a misspelt option
fails before anything runs. A user class named `package.module:Class` is imported and used the
same way, and must provide the same attributes (`Options`, and for codecs a unique `codec_id`).
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict

BUILTIN_CODECS = {
    "fp32": "simulator.methods.dense:DenseFP32",
    "fp16": "simulator.methods.dense:DenseFP16",
    "qsgd": "simulator.methods.qsgd:QSGD",
    "topk": "simulator.methods.topk:TopK",
    "signsgd": "simulator.methods.signsgd:SignSGD",
    "fstq": "simulator.methods.fstq:FedFSTQ",
}
BUILTIN_POLICIES = {
    "fisher": "simulator.methods.tokens:FisherTokens",
    "loss": "simulator.methods.tokens:LossTokens",
    "random": "simulator.methods.tokens:RandomTokens",
}
NO_POLICY = "none"  # train on every token


class NoOptions(BaseModel):
    """For classes without options: any given option is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# What a class must provide to serve as each kind of extension (checked when a scenario loads,
# so `os:getcwd` or `collections:OrderedDict` fail there, not mid-run).
CODEC_MEMBERS = ("codec_id", "needs_fisher", "encode", "decode")
POLICY_MEMBERS = ("hook",)
MEMBERS = {"codec": CODEC_MEMBERS, "downlink codec": CODEC_MEMBERS, "token policy": POLICY_MEMBERS}


def resolve(name: str, builtins: dict[str, str], what: str) -> type:
    """The class a name refers to; ValueError (shown as a scenario error) when unknown or when
    it is not a class with the members a `what` needs."""
    target = builtins.get(name, name)
    if ":" not in target:
        known = ", ".join(sorted(builtins))
        raise ValueError(f"unknown {what} {name!r}; use one of {known} or 'package.module:Class'")
    module_name, _, attr = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {what} {target!r}: {exc}") from None
    if not isinstance(found, type):
        raise ValueError(
            f"{what} {target!r} is a {type(found).__name__}, not a class; name a class that "
            f"provides {', '.join(MEMBERS.get(what, ()))} (see simulator/methods/base.py)"
        )
    missing = [member for member in MEMBERS.get(what, ()) if not hasattr(found, member)]
    if missing:
        raise ValueError(
            f"{what} {target!r} is not a {what}: it lacks {', '.join(missing)} "
            "(see simulator/methods/base.py)"
        )
    return found


def validate_options(cls: type, options: dict[str, Any]) -> BaseModel:
    """The class's options, validated (pydantic ValidationError when wrong)."""
    return getattr(cls, "Options", NoOptions).model_validate(options)


def build(cls: type, options: dict[str, Any]) -> Any:
    """An instance configured with validated options."""
    return cls(validate_options(cls, options))


def codec(name: str, options: dict[str, Any] | None = None) -> Any:
    """A codec instance by scenario name."""
    return build(resolve(name, BUILTIN_CODECS, "codec"), options or {})


def policy(name: str, options: dict[str, Any] | None = None) -> Any | None:
    """A token policy instance by scenario name (None for "none")."""
    if name == NO_POLICY:
        return None
    return build(resolve(name, BUILTIN_POLICIES, "token policy"), options or {})
