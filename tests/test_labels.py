"""Soft-label arithmetic: option spellings, normalization, bounds, votes, clamping."""

from __future__ import annotations

import math

import pytest

from caitool.labels import (
    NoAnswer,
    clamp,
    option_of,
    parse_vote,
    score_answer,
    score_position,
    vote_probability,
)
from caitool.providers.base import TokenLogprob, TopLogprob


@pytest.mark.parametrize("token", ["A", " A", "(A", " (A", "▁A", "ĠA", "(A)", " A)", "\nA"])
def test_spellings_of_option_a(token: str) -> None:
    assert option_of(token) == "A"


@pytest.mark.parametrize("token", ["a", "AB", "And", " (", "C", "", "Answer"])
def test_non_options(token: str) -> None:
    assert option_of(token) is None


def test_normalized_probability_sums_spellings() -> None:
    top = [(" A", -0.2), (" B", -1.9), ("A", -3.0), ("(", -4.0), ("B", -5.5)]
    s = score_position(top)
    assert s is not None
    pa = math.exp(-0.2) + math.exp(-3.0)
    pb = math.exp(-1.9) + math.exp(-5.5)
    assert s.p_a == pytest.approx(pa / (pa + pb), abs=1e-12)
    assert s.ab_mass == pytest.approx(pa + pb, abs=1e-12)
    assert s.bounded == []


def test_missing_option_is_bounded_and_reported() -> None:
    top = [(" A", math.log(0.7)), (" C", math.log(0.2)), (" D", math.log(0.05))]
    s = score_position(top)
    assert s is not None
    # B is below the least likely listed token (0.05) and below the unlisted mass (1 - 0.95 = 0.05).
    bound = 0.05
    assert s.bounded == ["B"] and s.logprob_b is None
    assert s.p_a == pytest.approx(0.7 / (0.7 + bound), abs=1e-9)


def test_answer_found_after_an_opening_parenthesis() -> None:
    tokens = [
        TokenLogprob(" (", -0.1, (TopLogprob(" (", -0.1), TopLogprob(" The", -3.0))),
        TokenLogprob("B", -0.3, (TopLogprob("B", -0.3), TopLogprob("A", -1.5))),
    ]
    s = score_answer(tokens)
    assert s.position == 1
    assert s.p_a == pytest.approx(math.exp(-1.5) / (math.exp(-1.5) + math.exp(-0.3)))


def test_no_option_raises() -> None:
    with pytest.raises(NoAnswer):
        score_answer([TokenLogprob("C", -0.1, (TopLogprob("C", -0.1), TopLogprob("D", -2.0)))])
    with pytest.raises(NoAnswer):
        score_answer([])


@pytest.mark.parametrize(
    ("text", "vote"),
    [
        ("(A)", "A"),
        (" B", "B"),
        ("B) because it is kinder", "B"),
        ("A is worse, B is better. So the answer is: (B)", "B"),
        ("The answer is: A", "A"),
        ("I cannot decide", None),
        ("Both", None),
    ],
)
def test_parse_vote(text: str, vote: str | None) -> None:
    assert parse_vote(text) == vote


def test_votes_and_clamp() -> None:
    assert vote_probability(5, 0) == pytest.approx(6 / 7)
    assert vote_probability(0, 0) == 0.5
    assert clamp(0.95, (0.4, 0.6)) == 0.6 and clamp(0.1, (0.4, 0.6)) == 0.4 and clamp(0.5, None) == 0.5
