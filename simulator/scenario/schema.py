"""The whole scenario: its sections and the checks that span several of them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from simulator.methods import registry
from simulator.network.traces import READERS
from simulator.scenario.availability import AlwaysAvailable, Availability
from simulator.scenario.evaluation import QA_KINDS, QA_METRICS, Evaluation
from simulator.scenario.faults import Faults
from simulator.scenario.fields import Model, Slug
from simulator.scenario.methods import Method
from simulator.scenario.network import Network, TraceLink
from simulator.scenario.population import DeviceSpec, Population
from simulator.scenario.server import Server
from simulator.scenario.training import (
    DECISION_METRICS,
    GENERATION_METRICS,
    METRIC_RANGES,
    METRICS,
    PubMedQAData,
    SurrogateTraining,
    Training,
    is_instruction,
)
from simulator.server.optimizers import OPTIMIZERS
from simulator.server.strategies import STRATEGIES


class Scenario(Model):
    name: Slug
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    population: Population
    devices: dict[Slug, DeviceSpec] = {}
    network: Network
    availability: Availability = AlwaysAvailable(kind="always")
    training: Training
    server: Server
    evaluation: Evaluation = Evaluation()
    faults: Faults = Faults()
    methods: list[Method] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        self._check_strategy()
        names = [m.name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"method names must be unique; repeated: {', '.join(dup)}")
        if self.training.mode == "surrogate" and (self.faults.corrupt or self.faults.truncate):
            raise ValueError(
                "faults.corrupt and faults.truncate damage real message bytes: they need "
                "training.mode = 'real' (faults.drop works in both modes)"
            )
        if self.evaluation.generate_every and not is_instruction(self.training):
            raise ValueError(
                "evaluation.generate_every needs instruction data: training.task = 'causal_lm' "
                "with data.prompt/response, kind = 'pubmedqa' or kind = 'synthetic'"
            )
        ev = self.evaluation
        if self.training.mode == "surrogate" and (ev.by or ev.clients_every):
            raise ValueError(
                "evaluation.by and evaluation.clients_every split a measured evaluation: they "
                "need training.mode = 'real'"
            )
        metric = self.evaluation.metric
        if metric is not None and metric not in self.metrics():
            raise ValueError(
                f"evaluation.metric {metric!r} is not reported by this training; "
                f"use one of {', '.join(self.metrics())}"
            )
        self._check_targets(metric or self.metrics()[0])
        codecs = []
        for m in self.methods:
            if self.training.mode == "real":
                codecs += m.check_real()
            else:
                m.check_surrogate()
        registry.check_codec_ids(codecs)
        needs_params = [m.name for m in self.methods if m.bits_per_param is not None]
        if needs_params and getattr(self.training, "adapter_params", 1) is None:
            raise ValueError(
                f"methods {needs_params} use bits_per_param; set training.adapter_params"
            )
        return self

    def _check_strategy(self) -> None:
        """Strategy options that depend on the population and availability."""
        strategy = self.server.build(self.population.per_round)
        strategy.check(self.population.clients)
        if strategy.asynchronous:
            if self.faults.drop == 1.0:
                raise ValueError(
                    f"faults.drop = 1 loses every upload, so {type(strategy).__name__} would "
                    "never receive an update; lower faults.drop"
                )
            if getattr(self.availability, "p_drop", 0.0) == 1.0:
                raise ValueError(
                    f"availability.p_drop = 1 drops every client {type(strategy).__name__} "
                    "starts, so no update would ever arrive; lower p_drop"
                )

    def _check_targets(self, metric: str) -> None:
        """A target the metric can never take would never be reached, or be reached at once
        (a loss target of -3): refuse it."""
        surrogate = isinstance(self.training, SurrogateTraining)  # its quality is a fraction
        low, high = (0.0, 1.0) if surrogate else METRIC_RANGES[metric]
        wrong = [t for t in self.evaluation.targets if not low <= t <= high]
        if wrong:
            span = f"[{low:g}, {high:g}]" if high < float("inf") else f">= {low:g}"
            raise ValueError(
                f"evaluation.targets {wrong} are outside the range of {metric} ({span}); "
                "give targets the metric can reach"
            )

    def plugins(self) -> list[str]:
        """The components named `package.module:Class` that are not built in: loading this
        scenario imported their modules, so their code ran."""
        from simulator.devices import DEVICE_MODELS  # the component imports this schema

        named = [(STRATEGIES, self.server.strategy), (DEVICE_MODELS, self.population.device_model)]
        links = (self.network.uplink, self.network.downlink)
        named += [(READERS, link.format) for link in links if isinstance(link, TraceLink)]
        for m in self.methods:
            named += [(registry.CODECS, m.codec), (registry.CODECS, m.downlink_codec)]
            named += [(registry.TOKEN_POLICIES, m.token_policy), (OPTIMIZERS, m.server_optimizer)]
        return sorted(
            {
                name
                for kind, name in named
                if name != registry.NO_POLICY and not kind.is_builtin(name)
            }
        )

    def metrics(self) -> tuple[str, ...]:
        """The metrics evaluation reports, the default target metric first."""
        if isinstance(self.training, SurrogateTraining):
            return (self.training.metric,)
        found = METRICS[self.training.task]
        if self.evaluation.generate_every:
            found += GENERATION_METRICS
            if isinstance(self.training.data, PubMedQAData):
                found += DECISION_METRICS
            if self.training.data.kind in QA_KINDS:
                found += QA_METRICS
        return found

    def method(self, name: str) -> Method:
        """The arm called name."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)
