"""Square brackets are one of the ways a server spells an option (caitool/labels.py: the punctuation that
may share a token with the letter is "(" and "["): a model asked "(A) or (B)" may answer "[A]", and a
tokenizer may make "[A" or " [B" one token. Those spellings count towards their option's probability, like
"(A" does; a bracket alone is an opening whose letter comes next."""

from __future__ import annotations

import math

import pytest

from caitool.labels import is_opening, option_of, score_answer, score_position
from caitool.providers.base import TokenLogprob, TopLogprob


@pytest.mark.parametrize(
    ("token", "option"),
    [("[A", "A"), (" [A", "A"), ("[A]", "A"), ("▁[B", "B"), ("Ġ[B]", "B"), (" [B]", "B")],
)
def test_a_bracketed_letter_names_its_option(token: str, option: str) -> None:
    assert option_of(token) == option


@pytest.mark.parametrize("token", ["[", " [", "▁["])
def test_a_bracket_alone_opens_the_answer(token: str) -> None:
    assert option_of(token) is None and is_opening(token)


def test_bracketed_spellings_add_to_their_options_mass() -> None:
    top = [(" [A", math.log(0.5)), (" [B", math.log(0.2)), (" A", math.log(0.1)), (" B", math.log(0.1))]
    s = score_position(top)
    assert s is not None
    assert s.bounded == []  # both options were listed: no bound stands in for a missing one
    assert s.p_a == pytest.approx(0.6 / 0.9, abs=1e-12)
    assert s.ab_mass == pytest.approx(0.9, abs=1e-12)


def test_an_answer_spelled_only_in_brackets_is_read() -> None:
    tokens = [
        TokenLogprob("[B", math.log(0.8), (TopLogprob("[B", math.log(0.8)), TopLogprob("[A", math.log(0.15))))
    ]
    s = score_answer(tokens)
    assert s.probs == pytest.approx({"A": 0.15 / 0.95, "B": 0.8 / 0.95}, abs=1e-12)


def test_the_letter_after_a_sampled_bracket_is_read() -> None:
    tokens = [
        TokenLogprob(
            " [", math.log(0.9), (TopLogprob(" [", math.log(0.9)), TopLogprob(" The", math.log(0.1)))
        ),
        TokenLogprob("A", math.log(0.7), (TopLogprob("A", math.log(0.7)), TopLogprob("B", math.log(0.3)))),
    ]
    s = score_answer(tokens)
    assert s.position == 1 and s.p_a == pytest.approx(0.7, abs=1e-12)
