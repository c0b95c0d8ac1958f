"""Cost of token usage, where the model's price is known (prices.toml beside this file, or flags)."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

from caitool.providers.base import Usage


@dataclass(frozen=True)
class Price:
    input: float  # USD per million tokens
    output: float

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1e6


@functools.cache
def _table() -> dict[str, dict[str, Price]]:
    data = tomllib.loads((Path(__file__).parent / "prices.toml").read_text())
    return {
        provider: {model: Price(float(p["input"]), float(p["output"])) for model, p in models.items()}
        for provider, models in data.items()
    }


def price_for(spec: str, override: tuple[float, float] | None = None) -> Price | None:
    if override is not None:
        return Price(*override)
    provider, _, model = spec.partition("/")
    if provider == "local":
        return Price(0.0, 0.0)
    models = _table().get(provider, {})
    if model in models:
        return models[model]
    # Longest prefix first, so "gpt-4o-mini-2024" matches gpt-4o-mini rather than gpt-4o.
    for name in sorted(models, key=len, reverse=True):
        if model.startswith(name + "-"):
            return models[name]
    return None
