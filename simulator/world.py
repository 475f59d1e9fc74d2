"""The world every method arm of a scenario shares: clients and their devices, uplinks and
downlinks, availability and transit faults, all drawn from the scenario's seed (common random
numbers)."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.devices import AvailabilityModel, Fleet, build_fleet
from simulator.network.faults import FaultModel
from simulator.network.link import LinkSet, build_links
from simulator.scenario import Scenario


@dataclass(frozen=True)
class World:
    """What every method arm shares: clients, devices, links, availability (common numbers)."""

    scenario: Scenario
    fleet: Fleet
    uplinks: LinkSet
    downlinks: LinkSet
    availability: AvailabilityModel
    faults: FaultModel


def build_world(scenario: Scenario, source: str = "scenario") -> World:
    """Draw the population and load or generate every link from the scenario's seed."""
    n = scenario.population.clients
    fleet = build_fleet(scenario.population, scenario.devices, scenario.seed, source)
    uplinks, downlinks = build_links(scenario.network, n, scenario.seed)
    availability = AvailabilityModel(scenario.availability, scenario.seed, n)
    faults = FaultModel(scenario.faults, scenario.seed)
    return World(scenario, fleet, uplinks, downlinks, availability, faults)
