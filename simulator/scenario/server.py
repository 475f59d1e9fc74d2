"""[server]: rounds and the strategy with its options (simulator/server/strategies.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, ValidationError, model_validator

from simulator.registry import validate_options
from simulator.scenario.fields import Model, Rounds, option_problems
from simulator.server.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy, make_strategy


class Server(Model):
    """`rounds` is the number of aggregations: rounds (synchronous) or server updates (FedBuff).
    `strategy` names a strategy (simulator/server/strategies.py: a built-in or
    `package.module:Class`); every other key of the section is one of its options, validated by
    the strategy class's `Options` (defaults filled in)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rounds: Rounds
    strategy: str = DEFAULT_STRATEGY

    @model_validator(mode="after")
    def _options(self) -> Server:
        cls = STRATEGIES.resolve(self.strategy)
        try:
            options = validate_options(cls, self.options())
        except ValidationError as exc:
            raise ValueError(option_problems(exc)) from None
        assert self.__pydantic_extra__ is not None
        self.__pydantic_extra__.update(options.model_dump())
        return self

    def options(self) -> dict[str, Any]:
        """The strategy's options: the section's keys but rounds and strategy."""
        return dict(self.model_extra or {})

    def build(self, per_round: int) -> Strategy:
        """The strategy this section configures."""
        return make_strategy(self.strategy, self.options(), per_round)
