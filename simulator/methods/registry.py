"""The methods' extension points: codecs, token policies and client algorithms
(simulator/registry.py's mechanism).

A codec class provides the Codec protocol's members (`codec_id`, written into every frame and
unique among codecs: checked when a scenario loads; `needs_fisher`, `fisher_rho`, `budget_for`,
`encode`, `decode`; subclass `CodecBase` for the defaults), a token policy the TokenPolicy
protocol's `hook` (both in simulator/methods/base.py), a client algorithm the ClientAlgorithm
protocol's `shared`, `begin` and `server_update` (simulator/training/algorithms.py; subclass its
`FedAvg` for the defaults).
"""

from __future__ import annotations

from typing import Any

from simulator.registry import Registry

CODECS = Registry(
    "codec",
    {
        "fp32": "simulator.methods.dense:DenseFP32",
        "fp16": "simulator.methods.dense:DenseFP16",
        "qsgd": "simulator.methods.qsgd:QSGD",
        "topk": "simulator.methods.topk:TopK",
        "signsgd": "simulator.methods.signsgd:SignSGD",
        "fstq": "simulator.methods.fstq:FedFSTQ",
    },
    ("codec_id", "needs_fisher", "fisher_rho", "budget_for", "encode", "decode"),
    "simulator/methods/base.py",
)
TOKEN_POLICIES = Registry(
    "token policy",
    {
        "fisher": "simulator.methods.tokens:FisherTokens",
        "loss": "simulator.methods.tokens:LossTokens",
        "random": "simulator.methods.tokens:RandomTokens",
    },
    ("hook",),
    "simulator/methods/base.py",
)
NO_POLICY = "none"  # train on every token
CLIENT_ALGORITHMS = Registry(
    "client algorithm",
    {
        "fedavg": "simulator.training.algorithms:FedAvg",
        "fedprox": "simulator.training.algorithms:FedProx",
        "scaffold": "simulator.training.algorithms:Scaffold",
    },
    ("shared", "begin", "server_update"),
    "simulator/training/algorithms.py",
)
DEFAULT_CLIENT = "fedavg"  # plain local steps


def codec(name: str, options: dict[str, Any] | None = None) -> Any:
    """A codec instance by scenario name."""
    return CODECS.build(name, options)


def policy(name: str, options: dict[str, Any] | None = None) -> Any | None:
    """A token policy instance by scenario name (None for "none")."""
    return None if name == NO_POLICY else TOKEN_POLICIES.build(name, options)


def client_algorithm(name: str, options: dict[str, Any] | None = None) -> Any:
    """A client algorithm instance by scenario name."""
    return CLIENT_ALGORITHMS.build(name, options)


def check_codec_ids(classes: list[type]) -> None:
    """ValueError when two different codec classes share a codec_id (the server could not tell
    their frames apart)."""
    seen: dict[int, type] = {}
    for cls in classes:
        other = seen.setdefault(cls.codec_id, cls)
        if other is not cls:
            raise ValueError(
                f"codecs {other.__module__}:{other.__qualname__} and "
                f"{cls.__module__}:{cls.__qualname__} share codec_id {cls.codec_id}; give "
                "each codec class its own codec_id"
            )
