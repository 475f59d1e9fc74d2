"""[population] and [devices]: clients, their device mix and device model; device classes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from simulator.registry import validate_options
from simulator.scenario.fields import (
    MAX_CLIENTS,
    Model,
    NonNegFloat,
    PositiveFloat,
    at_most,
    option_problems,
    ordered,
    within,
)

Watts = Annotated[NonNegFloat, at_most(1e5, "W")]

Tflops = Annotated[PositiveFloat, within(1e-9, 1e6, "TFLOPS")]

TflopsRange = Annotated[tuple[Tflops, Tflops], Field(strict=False)]  # a TOML list, strict items


class Population(Model):
    clients: Annotated[int, Field(gt=0)]
    per_round: Annotated[int, Field(gt=0)]
    mix: dict[str, Annotated[PositiveFloat, at_most(1e6, "(share or weight)")]] = {"mid_phone": 1.0}
    device_model: str = "lognormal"  # how speeds follow from the classes (simulator/devices.py)
    device_model_options: dict[str, Any] = {}

    @field_validator("clients")
    @classmethod
    def _not_too_many(cls, value: int) -> int:
        if value > MAX_CLIENTS:
            raise ValueError(
                f"at most {MAX_CLIENTS:,} clients: each costs ~360 bytes of device and link "
                f"arrays, so {value:,} would need ~{value * 360 / 1e9:.0f} GB before anything "
                "runs; simulate a smaller population"
            )
        return value

    @field_validator("device_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from simulator.devices import DEVICE_MODELS  # the component imports this schema

        DEVICE_MODELS.resolve(value)  # an error here is located at population.device_model
        return value

    @model_validator(mode="after")
    def _check(self) -> Population:
        if self.per_round > self.clients:
            raise ValueError(
                f"per_round ({self.per_round}) exceeds clients ({self.clients}); "
                "lower per_round or raise clients"
            )
        if not self.mix:
            raise ValueError("mix is empty; give at least one device class, e.g. mid_phone = 1.0")
        from simulator.devices import DEVICE_MODELS  # the component imports this schema

        cls = DEVICE_MODELS.resolve(self.device_model)  # known: checked by _known_model
        try:
            validate_options(cls, self.device_model_options)
        except ValidationError as exc:
            raise ValueError(
                f"device_model_options for {self.device_model!r}: {option_problems(exc)}"
            ) from None
        return self


class DeviceSpec(Model):
    """A device class, or an override of a catalogue class (unset fields keep the catalogue's)."""

    tflops: TflopsRange | None = None
    p_compute_w: Watts | None = None
    p_tx_w: Watts | None = None
    p_rx_w: Watts | None = None

    @model_validator(mode="after")
    def _check(self) -> DeviceSpec:
        if self.tflops is not None:
            ordered(self.tflops, "tflops")
        return self
