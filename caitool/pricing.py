"""Cost of token usage, where the model's price is known (prices.toml beside this file, or flags), per cost
tier (standard, flex, batch) and with cached input tokens."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool.providers.base import Usage

TIERS = ("standard", "flex", "batch")


@dataclass(frozen=True)
class Price:
    input: float  # USD per million tokens, standard tier
    output: float
    # USD per million cached input tokens (standard tier); None: no stated price, charged as input.
    cached_input: float | None = None
    # tier -> factor of the standard price; "standard" is always 1. A tier not listed has no price.
    tier_factors: Mapping[str, float] = field(default_factory=dict, hash=False)

    def has_tier(self, tier: str) -> bool:
        return tier == "standard" or tier in self.tier_factors

    def factor(self, tier: str) -> float:
        if tier not in TIERS:
            raise ValueError(f"unknown cost tier {tier!r} (use {', '.join(TIERS)})")
        if tier == "standard":
            return 1.0
        if tier not in self.tier_factors:
            raise ValueError(f"no {tier} price for this model (the price table has none)")
        return self.tier_factors[tier]

    def cost(self, usage: Usage, tier: str = "standard", cached_input_tokens: int | None = None) -> float:
        """USD for `usage` at `tier`; `cached_input_tokens` (default: the usage's own count) of its input
        tokens were read from the provider's prompt cache (at the cached price where one is stated, else as
        ordinary input)."""
        if cached_input_tokens is None:
            cached_input_tokens = usage.cached_input_tokens
        if not 0 <= cached_input_tokens <= usage.input_tokens:
            raise ValueError(f"cached input tokens {cached_input_tokens} not in [0, {usage.input_tokens}]")
        cached_rate = self.input if self.cached_input is None else self.cached_input
        fresh = usage.input_tokens - cached_input_tokens
        standard = fresh * self.input + cached_input_tokens * cached_rate + usage.output_tokens * self.output
        return standard * self.factor(tier) / 1e6


def _price(entry: Mapping[str, Any], factors: Mapping[str, float]) -> Price:
    cached = entry.get("cached_input")
    return Price(
        float(entry["input"]),
        float(entry["output"]),
        None if cached is None else float(cached),
        dict(factors),
    )


@functools.cache
def _table() -> dict[str, dict[str, Price]]:
    data = tomllib.loads((Path(__file__).parent / "prices.toml").read_text())
    factors = data.pop("tier_factors", {})
    return {
        provider: {model: _price(p, factors.get(provider, {})) for model, p in models.items()}
        for provider, models in data.items()
    }


def price_for(spec: str, override: tuple[float, float] | None = None) -> Price | None:
    """The price of `spec` (provider/model); `override`: (input, output) USD/M from the flags, which
    keeps the provider's tier factors. Local models cost nothing at every tier."""
    provider, _, model = spec.partition("/")
    if provider == "local":
        return Price(0.0, 0.0, 0.0, {"flex": 1.0, "batch": 1.0})
    models = _table().get(provider, {})
    found: Price | None = models.get(model)
    if found is None:
        # Longest prefix first, so "gpt-4o-mini-2024" matches gpt-4o-mini rather than gpt-4o.
        for name in sorted(models, key=len, reverse=True):
            if model.startswith(name + "-"):
                found = models[name]
                break
    if override is not None:
        factors = found.tier_factors if found is not None else {}
        return Price(override[0], override[1], None, factors)
    return found


def tier_cost(price: Price | None, tier: str, usage: Usage) -> float | None:
    """USD for `usage` sent at `tier`, or None when the price (or that tier's price) is unknown."""
    if price is None or not price.has_tier(tier):
        return None
    return price.cost(usage, tier)


def cost_by_tier(price: Price | None, usage_by_tier: Mapping[str, Usage]) -> dict[str, float | None]:
    """USD per tier of a run's usage split by tier (`retry.CallStats.usage_by_tier`)."""
    return {tier: tier_cost(price, tier, usage) for tier, usage in usage_by_tier.items()}


def total_cost(price: Price | None, usage_by_tier: Mapping[str, Usage]) -> float | None:
    """USD of all tiers together; None when any tier used has no known price."""
    costs = cost_by_tier(price, usage_by_tier).values()
    if price is None or any(c is None for c in costs):
        return None
    return sum(c for c in costs if c is not None)
