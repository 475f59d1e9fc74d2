"""[[methods]]: the arms, each a codec, token policy, client algorithm and server optimizer with
options."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ValidationError

from simulator.methods import registry
from simulator.registry import Registry, validate_options
from simulator.scenario.fields import (
    Count,
    Megabytes,
    Model,
    NonNegFloat,
    PositiveFloat,
    Seconds,
    Slug,
    Teraflops,
    at_most,
    option_problems,
    within,
)
from simulator.server.optimizers import DEFAULT_OPTIMIZER, OPTIMIZERS

DOWNLINK_CODEC = "fp16"  # the global adapter is broadcast as dense fp16 unless an arm says


class Method(Model):
    """One arm. Surrogate arms give a payload and a compute cost; real arms name a codec."""

    name: Slug
    payload_mb: Megabytes | None = None
    bits_per_param: Annotated[NonNegFloat, at_most(64.0, "bits")] | None = None
    compute_s: Seconds | None = None
    compute_tflop: Teraflops | None = None
    downlink_mb: Megabytes | None = None
    efficiency: Annotated[PositiveFloat, within(1e-6, 1e6, "times")] = 1.0
    codec: str = "fp16"
    codec_options: dict[str, Any] = {}
    downlink_codec: str = DOWNLINK_CODEC
    downlink_codec_options: dict[str, Any] = {}
    token_policy: str = registry.NO_POLICY
    token_options: dict[str, Any] = {}
    client: str = registry.DEFAULT_CLIENT
    client_options: dict[str, Any] = {}
    server_optimizer: str = DEFAULT_OPTIMIZER
    server_optimizer_options: dict[str, Any] = {}
    freeze_a: bool = False
    local_steps: Count | None = None

    def check_surrogate(self) -> None:
        """Surrogate arms state their payload and compute cost."""
        if (self.payload_mb is None) == (self.bits_per_param is None):
            raise ValueError(f"arm {self.name!r}: give exactly one of payload_mb or bits_per_param")
        if (self.compute_s is None) == (self.compute_tflop is None):
            raise ValueError(f"arm {self.name!r}: give exactly one of compute_s or compute_tflop")
        if self.downlink_codec != DOWNLINK_CODEC or self.downlink_codec_options:
            raise ValueError(
                f"arm {self.name!r}: downlink_codec encodes real adapters (training.mode = "
                "'real'); a surrogate arm states its broadcast size as downlink_mb"
            )
        real_only = [
            key
            for key, default in (
                ("codec", DOWNLINK_CODEC),
                ("codec_options", {}),
                ("token_policy", registry.NO_POLICY),
                ("token_options", {}),
                ("client", registry.DEFAULT_CLIENT),
                ("client_options", {}),
                ("server_optimizer", DEFAULT_OPTIMIZER),
                ("server_optimizer_options", {}),
            )
            if getattr(self, key) != default
        ]
        if real_only:
            raise ValueError(
                f"arm {self.name!r}: {', '.join(real_only)} only apply to training.mode = "
                "'real' (a surrogate arm states payload_mb or bits_per_param); remove them"
            )

    def check_real(self) -> list[type]:
        """Real arms measure payload and compute; modelled costs would be silently ignored.
        Returns the arm's uplink and downlink codec classes."""
        modelled = [
            key
            for key in ("payload_mb", "bits_per_param", "compute_s", "compute_tflop", "downlink_mb")
            if getattr(self, key) is not None
        ]
        if modelled or self.efficiency != 1.0:
            raise ValueError(
                f"arm {self.name!r}: {', '.join(modelled) or 'efficiency'} only apply to "
                "training.mode = 'surrogate' (real training measures bytes and work); remove them"
            )
        codecs = registry.CODECS
        up = self._check_options("codec", self.codec, self.codec_options, codecs)
        down = self._check_options(
            "downlink_codec", self.downlink_codec, self.downlink_codec_options, codecs
        )
        if getattr(down, "needs_fisher", False):
            raise ValueError(
                f"arm {self.name!r}: downlink_codec {self.downlink_codec!r} needs a Fisher "
                "estimate from local training, which the server broadcasting the global "
                "adapter does not have; use fp16, fp32, qsgd, topk or signsgd"
            )
        if self.token_policy != registry.NO_POLICY:
            self._check_options(
                "token_policy", self.token_policy, self.token_options, registry.TOKEN_POLICIES
            )
        elif self.token_options:
            raise ValueError(f"arm {self.name!r}: token_options need a token_policy")
        self._check_options("client", self.client, self.client_options, registry.CLIENT_ALGORITHMS)
        self._check_options(
            "server_optimizer", self.server_optimizer, self.server_optimizer_options, OPTIMIZERS
        )
        return [up, down]

    def _check_options(self, key: str, name: str, options: dict[str, Any], kind: Registry) -> type:
        """The class `key` names, after checking its options (`<key>_options`, or
        token_options for the token policy)."""
        try:
            cls = kind.resolve(name, key.replace("_", " "))
        except ValueError as exc:
            raise ValueError(f"arm {self.name!r}: {exc}") from None
        try:
            validate_options(cls, options)
        except ValidationError as exc:
            problems = option_problems(exc)
            options_key = key.replace("_policy", "") + "_options"
            raise ValueError(f"arm {self.name!r}: {options_key} for {name!r}: {problems}") from None
        return cls
