"""The price table's cost tiers (standard, flex, batch) and cached input tokens."""

from __future__ import annotations

import pytest

from caitool.pricing import Price, price_for
from caitool.providers.base import Usage

USAGE = Usage(input_tokens=1_000_000, output_tokens=200_000)


def test_batch_is_half_the_standard_price_where_the_table_says_so() -> None:
    price = price_for("openai/gpt-4o-mini-2024-07-18")
    assert price is not None
    standard = price.cost(USAGE)
    assert standard == pytest.approx(0.15 + 0.2 * 0.60)
    assert price.cost(USAGE, tier="batch") == pytest.approx(standard / 2)
    assert price.cost(USAGE, tier="flex") == pytest.approx(standard / 2)
    claude = price_for("anthropic/claude-3-5-haiku-20241022")
    assert claude is not None
    assert claude.cost(USAGE, tier="batch") == pytest.approx(claude.cost(USAGE) / 2)


def test_a_tier_without_a_stated_price_is_refused_not_guessed() -> None:
    claude = price_for("anthropic/claude-sonnet-4")
    assert claude is not None and not claude.has_tier("flex") and claude.has_tier("batch")
    with pytest.raises(ValueError, match="no flex price"):
        claude.cost(USAGE, tier="flex")
    with pytest.raises(ValueError, match="unknown cost tier"):
        claude.cost(USAGE, tier="cheap")


def test_cached_input_tokens_use_the_cached_price_or_the_input_price_when_none_is_stated() -> None:
    stated = Price(2.0, 8.0, cached_input=0.5, tier_factors={"batch": 0.5})
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert stated.cost(usage, cached_input_tokens=600_000) == pytest.approx(0.4 * 2.0 + 0.6 * 0.5)
    assert stated.cost(usage, tier="batch", cached_input_tokens=600_000) == pytest.approx((0.8 + 0.3) / 2)
    table = price_for("openai/gpt-4o")
    assert table is not None and table.cached_input is None  # the reference states no cached prices
    assert table.cost(usage, cached_input_tokens=600_000) == pytest.approx(table.cost(usage))
    with pytest.raises(ValueError, match="cached input tokens"):
        stated.cost(usage, cached_input_tokens=usage.input_tokens + 1)


def test_overrides_keep_the_providers_tiers_and_local_is_free() -> None:
    over = price_for("openai/gpt-4o", (1.0, 2.0))
    assert over is not None and over.cost(USAGE, tier="batch") == pytest.approx((1.0 + 0.4) / 2)
    unknown = price_for("openai/some-future-model", (1.0, 2.0))
    assert unknown is not None and not unknown.has_tier("batch")
    local = price_for("local/tiny")
    assert local is not None and local.cost(USAGE, tier="batch", cached_input_tokens=10) == 0.0
    assert price_for("openai/unknown-model") is None
    assert hash(over) == hash(Price(1.0, 2.0))
