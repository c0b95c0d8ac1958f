"""Soft-label arithmetic: option spellings, normalization, bounds, votes, clamping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caitool.labels import (
    MIN_OPTION_MASS,
    NINE_OPTIONS,
    NoAnswer,
    UnusableLogprobs,
    clamp,
    option_of,
    parse_vote,
    resolve,
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
        ("A careful reader would pick (B) because it is kinder.", "B"),
        ("Answer: (B)", "B"),
        ("A better response is (B).", "B"),
        ("(A) does not address it. (B) is helpful.\n\nTherefore, option (B) is the best response.", "B"),
        ("A gives dangerous details; B is safer. I choose B.", "B"),
        ("Option (A) is harmful, so the answer is (B).", "B"),
        ("The answer is (A). On reflection, the answer is: (B)", "B"),
        ("A careful look at both", None),
        ("A.", "A"),
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


# -- two-token answers: realistic top-20 lists ----------------------------------------------------------


def top20(pairs: dict[str, float]) -> tuple[TopLogprob, ...]:
    """A 20-entry top list: the given tokens, then filler tokens sharing what is left of the mass."""
    fillers = [
        " The",
        " Its",
        " Hmm",
        " Option",
        " Both",
        " Response",
        ".",
        " It",
        " This",
        " My",
        " We",
        " Neither",
    ]
    fillers += [" Answer", " Based", " After", " In", " Of", " To", " You", " So"]
    left = max(1e-9, 1.0 - sum(math.exp(v) for v in pairs.values()))
    n = 20 - len(pairs)
    extra = {f: math.log(left / (2 * n)) for f in fillers[:n]}
    out = sorted({**pairs, **extra}.items(), key=lambda kv: -kv[1])
    return tuple(TopLogprob(t, v) for t, v in out)


def tok(token: str, pairs: dict[str, float]) -> TokenLogprob:
    return TokenLogprob(token, pairs[token], top20(pairs))


def test_audit_worked_example_follows_the_opening() -> None:
    """Audit §3.3: "(" sampled with most of the mass, bare letters low behind it. The old reading took the
    bare letters at position 0 (P(A) = 0.38); the path through " (" says A (0.91 on that path)."""
    pos0 = {" (": -0.05, " B": -3.5, " A": -4.0}
    pos1 = {"A": -0.1, "B": -2.4}
    s = score_answer([tok(" (", pos0), tok("A", pos1), TokenLogprob(")", -0.01)])
    p_open = math.exp(-0.05)
    pa = math.exp(-4.0) + p_open * math.exp(-0.1)
    pb = math.exp(-3.5) + p_open * math.exp(-2.4)
    assert s.p_a == pytest.approx(pa / (pa + pb), abs=1e-9)
    assert s.p_a == pytest.approx(0.883, abs=1e-3) and s.p_a > 0.5  # the old code read 0.378
    assert math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.4)) == pytest.approx(0.909, abs=1e-3)
    assert s.ab_mass == pytest.approx(pa + pb, abs=1e-9) and s.trusted
    assert s.position == 1 and s.unresolved == 0.0 and s.p_range is None


@pytest.mark.parametrize("opening", ["(", " (", "▁("])
def test_opening_then_letter(opening: str) -> None:
    pos0 = {opening: math.log(0.9), " A": math.log(0.01), " B": math.log(0.03)}
    pos1 = {"B": math.log(0.7), "A": math.log(0.29)}
    s = score_answer([tok(opening, pos0), tok("B", pos1)])
    pa, pb = 0.01 + 0.9 * 0.29, 0.03 + 0.9 * 0.7
    assert s.p_a == pytest.approx(pa / (pa + pb), abs=1e-9)


def test_letter_first_leaves_the_opening_unresolved_and_bounded() -> None:
    # The letter was sampled; "(" had 0.3 but its continuation is unseen: estimate as the ratio, and bound.
    pos0 = {" A": math.log(0.45), " B": math.log(0.15), "(": math.log(0.3)}
    s = score_answer([tok(" A", pos0), TokenLogprob(")", -0.01)])
    assert s.p_a == pytest.approx(0.75, abs=1e-9)
    assert s.unresolved == pytest.approx(0.3, abs=1e-9) and s.opening == "("
    assert s.p_range == (pytest.approx(0.45 / 0.9), pytest.approx(0.75 / 0.9))
    # A re-ask with "(" appended to the prompt observes P1 and resolves it exactly.
    after = score_answer([tok("B", {"B": math.log(0.8), "A": math.log(0.2)})])
    r = resolve(s, after)
    assert r.p_a == pytest.approx((0.45 + 0.3 * 0.2) / (0.6 + 0.3), abs=1e-9)
    assert r.ab_mass == pytest.approx(0.9, abs=1e-9)


def test_single_token_paren_letter() -> None:
    pos0 = {"(A": math.log(0.6), "(B": math.log(0.3), "(": math.log(0.02)}
    s = score_answer([tok("(A", pos0)])
    assert s.p_a == pytest.approx(2 / 3, abs=1e-9) and s.position == 0


def test_prose_first_is_untrusted() -> None:
    pos0 = {"The": math.log(0.85), " A": math.log(0.01), " B": math.log(0.02), " (": math.log(0.03)}
    s = score_answer([tok("The", pos0), tok(" answer", {" answer": -0.01})])
    assert s.ab_mass == pytest.approx(0.03, abs=1e-9)
    assert not s.trusted and s.ab_mass < MIN_OPTION_MASS


def test_scan_stops_at_a_token_that_is_not_an_opening() -> None:
    # Position 1 names B, but position 0 sampled prose: what follows prose is not the answer.
    toks = [tok(" So", {" So": math.log(0.9), " A": math.log(0.05)}), tok("B", {"B": -0.01})]
    s = score_answer(toks)
    assert s.p_a > 0.5 and s.bounded == ["B"]


def test_answer_at_the_third_position() -> None:
    toks = [
        tok(" ", {" ": -0.01}),
        tok("(", {"(": -0.01}),
        tok("A", {"A": math.log(0.8), "B": math.log(0.2)}),
    ]
    s = score_answer(toks)
    assert s.position == 2 and s.p_a == pytest.approx(0.8, abs=1e-6)


def test_missing_option_bound_is_the_smaller_of_least_listed_and_unlisted() -> None:
    # Unlisted mass 0.4 > least listed 0.05: the bound must be 0.05 (kills "unlisted mass only").
    top = [(" A", math.log(0.5)), (" C", math.log(0.05)), (" D", math.log(0.05))]
    s = score_position(top)
    assert s is not None and s.bounded == ["B"]
    assert s.p_a == pytest.approx(0.5 / 0.55, abs=1e-9)
    # Unlisted mass 0.01 < least listed 0.2: the bound must be 0.01.
    top = [(" A", math.log(0.59)), (" C", math.log(0.2)), (" D", math.log(0.2))]
    s = score_position(top)
    assert s is not None and s.p_a == pytest.approx(0.59 / 0.60, abs=1e-6)


def test_nine_options() -> None:
    pos0 = {" (": math.log(0.95)}
    pos1 = {
        c: math.log(p)
        for c, p in zip("ABCDEFGHI", [0.05, 0.1, 0.02, 0.6, 0.1, 0.05, 0.03, 0.03, 0.01], strict=True)
    }
    s = score_answer([tok(" (", pos0), tok("D", pos1)], NINE_OPTIONS)
    assert max(s.probs, key=lambda k: s.probs[k]) == "D"
    assert s.probs["D"] == pytest.approx(0.6 / 0.99, abs=1e-9) and sum(s.probs.values()) == pytest.approx(1.0)
    assert option_of(" (E)", NINE_OPTIONS) == "E" and option_of(" (E)") is None


# -- non-finite log-probs --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), "nan", float("inf"), 0.5, None])
def test_unusable_logprobs_raise(bad: object) -> None:
    toks = [TokenLogprob(" A", -0.1, (TopLogprob(" A", -0.1), TopLogprob(" B", bad)))]  # type: ignore[arg-type]
    with pytest.raises(UnusableLogprobs):
        score_answer(toks)


def test_minus_infinity_is_probability_zero() -> None:
    s = score_answer([TokenLogprob(" A", -0.1, (TopLogprob(" A", -0.1), TopLogprob(" B", float("-inf"))))])
    assert s.p_a == 1.0 and s.logprob_b is None and math.isfinite(s.ab_mass)


def test_both_options_underflowing_is_unusable_not_a_crash() -> None:
    toks = [TokenLogprob(" A", -1e308, (TopLogprob(" A", -1e308), TopLogprob(" B", -1e308)))]
    with pytest.raises(UnusableLogprobs):
        score_answer(toks)


def test_duplicated_entries_count_once() -> None:
    toks = [TokenLogprob(" A", math.log(0.4), tuple(TopLogprob(" A", math.log(0.4)) for _ in range(5)))]
    s = score_answer(
        [TokenLogprob(toks[0].token, toks[0].logprob, (*toks[0].top, TopLogprob(" B", math.log(0.4))))]
    )
    assert s.p_a == pytest.approx(0.5)


# -- votes: property-based -------------------------------------------------------------------------------

_DISCUSSION = [
    "Response (A) mentions safety.",
    "(B) is longer.",
    "A careful look shows details.",
    "Both have merits.",
    "(A) gives more detail, and (B) is shorter.",
    "A reader may like B.",
    "Option (A) explains the risk.",
    "B) lists steps",
    "A response should be kind.",
]
_CONCLUDE = [
    "So the answer is: ({})",
    "Therefore, option ({}) is the best response.",
    "Answer: ({})",
    "Therefore, ({}).",
    "The answer is {}.",
    "I choose {}.",
    "Option ({}) is better.",
]


@given(
    st.lists(st.sampled_from(_DISCUSSION), max_size=6),
    st.sampled_from(_CONCLUDE),
    st.sampled_from("AB"),
    st.sampled_from(["", " That is all.", "\n"]),
)
def test_last_conclusion_wins_over_any_discussion(
    discussion: list[str], conclusion: str, letter: str, tail: str
) -> None:
    text = " ".join([*discussion, conclusion.format(letter)]) + tail
    assert parse_vote(text) == letter


@given(st.lists(st.sampled_from(_DISCUSSION), min_size=1, max_size=6), st.sampled_from("AB"))
def test_a_later_conclusion_overrides_an_earlier_one(discussion: list[str], letter: str) -> None:
    other = "B" if letter == "A" else "A"
    text = f"The answer is ({other}). " + " ".join(discussion) + f" On reflection, the answer is: ({letter})"
    assert parse_vote(text) == letter


@given(st.lists(st.sampled_from([d for d in _DISCUSSION if not d.startswith(("(", "B)"))]), min_size=1))
def test_discussion_alone_is_no_vote_when_it_starts_with_the_article(discussion: list[str]) -> None:
    text = "A " + " ".join(discussion)
    assert parse_vote(text) is None


def test_the_sampled_token_counts_when_its_top_list_omits_it() -> None:
    # Some servers list alternatives without the sampled token itself: it still carries its own mass.
    s = score_answer([TokenLogprob(" A", math.log(0.6), (TopLogprob(" B", math.log(0.3)),))])
    assert s.p_a == pytest.approx(0.6 / 0.9, abs=1e-9) and s.bounded == []
