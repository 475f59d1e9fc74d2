"""Scenario files: TOML -> validated, frozen `Scenario`.

Every failure raises `ScenarioError` naming the file, the dotted key, the offending value and
the fix, before anything runs. Relative paths are resolved against the scenario file's folder,
or against `network.trace_dir` for trace files when that is set; a path given with `--set`
(trace_dir, availability file, data path) is relative to the current directory instead.

The package: one module per section (fields, population, network, availability, training,
server, evaluation, methods, faults), the whole scenario (schema), error text (messages),
`--set` (overrides), path resolution (paths) and loading (loading).
"""

from __future__ import annotations

from simulator.scenario.availability import (
    AlwaysAvailable,
    Availability,
    BernoulliAvailability,
    SessionAvailability,
)
from simulator.scenario.evaluation import Evaluation
from simulator.scenario.faults import Faults
from simulator.scenario.loading import load_scenario, resolved_dict, scenario_from_dict
from simulator.scenario.methods import DOWNLINK_CODEC, Method
from simulator.scenario.network import (
    ConstantLink,
    LinkSpec,
    MarkovLink,
    Network,
    RatioLink,
    StragglerTailLink,
    TraceLink,
    UnlimitedLink,
)
from simulator.scenario.overrides import apply_override, parse_override
from simulator.scenario.population import DeviceSpec, Population
from simulator.scenario.schema import Scenario
from simulator.scenario.server import Server
from simulator.scenario.training import (
    DECISION_METRICS,
    GENERATION_METRICS,
    METRICS,
    DataSpec,
    FileData,
    LocalTraining,
    Lora,
    Partition,
    PubMedQAData,
    RealTraining,
    SquadData,
    SurrogateTraining,
    SyntheticData,
    Training,
)

__all__ = [
    "DECISION_METRICS",
    "DOWNLINK_CODEC",
    "GENERATION_METRICS",
    "METRICS",
    "AlwaysAvailable",
    "Availability",
    "BernoulliAvailability",
    "ConstantLink",
    "DataSpec",
    "DeviceSpec",
    "Evaluation",
    "Faults",
    "FileData",
    "LinkSpec",
    "LocalTraining",
    "Lora",
    "MarkovLink",
    "Method",
    "Network",
    "Partition",
    "Population",
    "PubMedQAData",
    "RatioLink",
    "RealTraining",
    "Scenario",
    "Server",
    "SessionAvailability",
    "SquadData",
    "StragglerTailLink",
    "SurrogateTraining",
    "SyntheticData",
    "TraceLink",
    "Training",
    "UnlimitedLink",
    "apply_override",
    "load_scenario",
    "parse_override",
    "resolved_dict",
    "scenario_from_dict",
]
