"""Soft preference labels from an (A)/(B) answer: pure functions, no I/O.

The paper (Bai et al. 2022, Sec. 4.1) takes the feedback model's log-probabilities of "(A)" and "(B)" and
normalizes them into a probability that A is the better response. Servers tokenize the answer in many ways
(" A", "A", "(A", " (A", "▁A", "ĠA", "(A)"), and often as two tokens, an opening "(" and then the letter.
The probability of an option is that of all of its spellings along the answer:

    P(A) = P0(A-spellings) + P0(opening) · P1(A | opening)      (and so on for the positions followed)

normalized over the options. The API only shows the distribution after the token that was sampled, so the
path through the sampled opening is followed; where probability went to an opening that was *not* sampled
(e.g. the letter was sampled first, "(" second-best), its continuation is unknown: that mass is reported as
`unresolved`, the estimate assumes it splits like the rest, and `p_range` bounds the answer either way. A
caller that can append the opening to the prompt (completion mode) may re-ask and `resolve` it exactly.

If an option is absent from the top-k list, its probability is at most that of the least likely listed
token (and at most the mass not listed): that upper bound is used, and the score says so in `bounded`.

`ab_mass` is the probability that the answer names an option at all. Below `MIN_OPTION_MASS` the ratio
describes a minority of the model's behaviour (prose, a refusal, another letter), so callers do not trust
it: they re-ask, then fall back to sampled votes, and say so in the row.

Log-probs that are NaN, +Infinity, positive or not numbers make an answer unusable (`UnusableLogprobs`);
-Infinity is a legitimate probability 0. Every number in a score is finite.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from caitool.providers.base import TokenLogprob, TopLogprob

# Scoring method version, part of every labelling command's resume fingerprint: a change of how answers are
# read (v2: two-token answers, option-mass threshold, conclusion-based votes) must not mix into old outputs.
LABEL_METHOD = "2"

# Below this probability on the options, the answer is untrusted (see the module docstring). 0.2: a judge
# that answers the question puts nearly all of its mass on the options (0.9+ on the paper's and our chat
# formats with API models; 0.3-0.9 with the 135M embedded model); prose-first answers and refusals put a few
# per cent, and those few per cent are exactly the reading that flipped labels before (audit §3.3: 0.05).
MIN_OPTION_MASS = 0.2

TWO_OPTIONS = "AB"
NINE_OPTIONS = "ABCDEFGHI"

# Markers tokenizers use for a leading space (SentencePiece "▁", byte-level BPE "Ġ") and plain punctuation
# that may share a token with the letter.
_STRIP = " \t\n▁Ġ(["
_OPEN_ONLY = re.compile(r"^[\s▁Ġ]*[(\[]?[\s▁Ġ]*$")
_MAX_POSITIONS = 4


def option_of(token: str, options: str = TWO_OPTIONS) -> str | None:
    """The option letter when the token is one of the ways a server spells it, else None."""
    core = token.strip(_STRIP).rstrip(")]").strip()
    if len(core) == 1 and core in options:
        return core
    return None


def is_opening(token: str) -> bool:
    """A token that only opens the answer ("(", " (", "▁(", or a bare space): the letter comes next."""
    return token != "" and bool(_OPEN_ONLY.match(token))


@dataclass
class OptionScore:
    """The probability of each option, from one question in one order."""

    probs: dict[str, float]  # normalized over the options
    logprobs: dict[str, float | None]  # log of each option's summed probability; None if bounded or 0
    ab_mass: float  # probability that the answer names an option, along the followed path (bounds included)
    bounded: list[str] = field(default_factory=list)  # options missing from top-k, replaced by their bound
    position: int = 0  # the last generated token read (1 when the answer went "(" then the letter)
    unresolved: float = 0.0  # mass on openings whose continuation was not observed (P1 unknown)
    opening: str | None = None  # the most likely unresolved opening token, for a re-ask
    p_range: tuple[float, float] | None = None  # bounds on P(first option) when `unresolved` > 0

    @property
    def p_a(self) -> float:
        return self.probs["A"]

    @property
    def logprob_a(self) -> float | None:
        return self.logprobs.get("A")

    @property
    def logprob_b(self) -> float | None:
        return self.logprobs.get("B")

    @property
    def trusted(self) -> bool:
        return self.ab_mass >= MIN_OPTION_MASS


class NoAnswer(ValueError):
    """Neither option appears where the answer should be."""


class UnusableLogprobs(NoAnswer):
    """The server's log-probs cannot be turned into probabilities (NaN, +Infinity, positive, not numbers, or
    every option at probability 0)."""


def _prob(lp: object) -> float:
    """exp(logprob), with -Infinity as 0; anything that is not a log-probability raises UnusableLogprobs."""
    if isinstance(lp, bool) or not isinstance(lp, int | float):
        raise UnusableLogprobs(f"log-prob {lp!r} is not a number")
    if math.isnan(lp) or lp > 1e-6:
        raise UnusableLogprobs(f"log-prob {lp!r} is not a log-probability")
    return math.exp(min(lp, 0.0))


def _alternatives(tok: TokenLogprob) -> list[tuple[str, float]]:
    """(token, probability) at one position: the top list (first spelling of a token wins, so a server that
    repeats an entry does not count it twice) plus the sampled token when the list lacks it."""
    seen: dict[str, float] = {}
    for t in tok.top:
        if t.token not in seen:
            seen[t.token] = _prob(t.logprob)
    if tok.token not in seen:
        seen[tok.token] = _prob(tok.logprob)
    return list(seen.items())


def _bound(probs: Sequence[float]) -> float:
    """Upper bound on the probability of a token missing from a top-k list."""
    if not probs:
        return 0.0
    return max(min(min(probs), max(0.0, 1.0 - sum(probs))), 1e-12)


def _log(p: float) -> float | None:
    return math.log(p) if p > 0 else None


def score_position(top: Sequence[tuple[str, float]], options: str = TWO_OPTIONS) -> OptionScore | None:
    """Score one token position from its (token, logprob) alternatives; None if no option is there."""
    tok = TokenLogprob(top[0][0], top[0][1], tuple(TopLogprob(t, lp) for t, lp in top)) if top else None
    if tok is None or not any(option_of(t, options) for t, _ in top):
        return None
    return score_answer([tok], options, max_positions=1)


def score_answer(
    tokens: Sequence[TokenLogprob], options: str = TWO_OPTIONS, max_positions: int = _MAX_POSITIONS
) -> OptionScore:
    """Read P(option) from the first generated tokens, following the sampled path through opening tokens
    ("(", " (", "▁(", spaces) and adding up each option's spellings at every position on the way."""
    mass = dict.fromkeys(options, 0.0)
    listed = dict.fromkeys(options, False)
    carry = 1.0  # probability of the sampled path so far
    unresolved = 0.0
    openings: dict[str, float] = {}
    last = 0
    last_alts: list[tuple[str, float]] = []
    last_carry = 1.0
    for i, tok in enumerate(tokens[:max_positions]):
        alts = _alternatives(tok)
        last, last_alts, last_carry = i, alts, carry
        sampled_opens = is_opening(tok.token) and option_of(tok.token, options) is None
        for t, p in alts:
            opt = option_of(t, options)
            if opt is not None:
                mass[opt] += carry * p
                listed[opt] = True
            elif is_opening(t) and not (sampled_opens and t == tok.token):
                unresolved += carry * p  # an opening the model did not take here: its letter is unseen
                openings[t] = openings.get(t, 0.0) + carry * p
        if not sampled_opens:
            break
        carry *= dict(alts)[tok.token]
    bounded = []
    if last_alts:
        bound = _bound([p for _, p in last_alts])
        for opt in options:
            if not listed[opt]:
                mass[opt] = last_carry * bound
                bounded.append(opt)
    if not any(listed.values()):
        raise NoAnswer("no option among the answer's top log-probs")
    total = sum(mass.values())
    if not total > 0 or not math.isfinite(total):
        raise UnusableLogprobs(f"the options' probabilities add up to {total!r}")
    probs = {opt: m / total for opt, m in mass.items()}
    first = options[0]
    p_range = None
    if unresolved > 0:
        # The unseen continuation puts between none and all of that mass on the first option.
        p_range = (mass[first] / (total + unresolved), (mass[first] + unresolved) / (total + unresolved))
    return OptionScore(
        probs=probs,
        logprobs={opt: None if opt in bounded else _log(m) for opt, m in mass.items()},
        ab_mass=total,
        bounded=bounded,
        position=last,
        unresolved=unresolved,
        opening=max(openings, key=lambda k: openings[k]) if openings else None,
        p_range=p_range,
    )


def resolve(score: OptionScore, continuation: OptionScore) -> OptionScore:
    """Combine a score whose opening was left unresolved with the answer read after that opening was put
    into the prompt: P(opt) = P0(opt) + P0(opening) · P1(opt | opening), now with P1 observed."""
    mass = {opt: score.probs[opt] * score.ab_mass for opt in score.probs}
    for opt in mass:
        mass[opt] += score.unresolved * continuation.probs.get(opt, 0.0)
    total = sum(mass.values())
    if not total > 0 or not math.isfinite(total):
        raise UnusableLogprobs(f"the options' probabilities add up to {total!r}")
    return OptionScore(
        probs={opt: m / total for opt, m in mass.items()},
        logprobs={opt: _log(m) for opt, m in mass.items()},
        ab_mass=total,
        bounded=sorted(set(score.bounded) | set(continuation.bounded)),
        position=score.position,
    )


# ---------------------------------------------------------------------------------------------------------
# Votes read from free text

_L = r"(?:\((?P<{n}>[A-I])\)|\b(?P<{m}>[A-I])\b(?=\s*(?:$|[.,;:!?)\]\n])))"


def _letter(i: int) -> str:
    return _L.format(n=f"p{i}", m=f"b{i}")


# A conclusion: what follows "answer is", "Answer:", "Therefore, (B)", "option (B) is better", "I choose B".
# The letter must be in parentheses or stand alone before punctuation or the end, so the article in "A
# careful reader would pick (B)" is not a vote; the verbs' object may be a bare letter ("I choose B because").
_CONCLUSIONS = [
    r"(?i:answer)\s*(?i:is)?\s*:?\s*(?:(?i:option|response|choice)\s+)?" + _letter(0),
    r"(?i:therefore|thus|hence|so|overall|in conclusion),?\s+(?:(?i:option|response|choice)\s+)?"
    + _letter(1),
    r"(?i:choose|pick|prefer|select|go with|vote for)\s+(?:(?i:option|response|choice)\s+)?"
    r"\(?(?P<x1>[A-I])\)?(?![\w'])",
    r"(?:(?i:option|response|choice)\s+)?(?<![\w'(])\(?(?P<x2>[A-I])\)?"
    r"\s+(?i:is|seems|would be)\s+(?i:the\s+)?"
    r"(?i:better|best|preferred|preferable|safer|less harmful|more helpful|more appropriate|correct)",
    r"(?i:(?:the\s+|a\s+)?(?:better|best|preferred|safer|less harmful|more helpful|correct)\s+"
    r"(?:response|option|answer|choice)\s+is)\s*:?\s*" + _letter(2),
]
_CONCLUSION_RE = re.compile("|".join(f"(?:{c})" for c in _CONCLUSIONS))
# Only when no conclusion is found: an answer that *is* the letter ("(A)", " B", "B) because", "A.").
_LEADING_RE = re.compile(r"^\s*(?:\((?P<p>[A-I])\)|(?P<b>[A-I])(?:\)|\s*$|[.:,](?:\s|$)))")


def parse_vote(text: str, options: str = TWO_OPTIONS) -> str | None:
    """The option a free-text answer chose, or None. The last explicit conclusion wins ("So the answer is:
    (B)", "Therefore, option (B) is better", "Answer: (B)", "I choose B"), so reasoning that discusses both
    options before concluding is read correctly; a leading letter counts only when nothing else does."""
    found = None
    for m in _CONCLUSION_RE.finditer(text):
        letter = next((v for v in m.groupdict().values() if v), None)
        if letter is not None and letter in options:
            found = letter
    if found is not None:
        return found
    lead = _LEADING_RE.match(text)
    if lead is not None:
        letter = str(lead.group("p") or lead.group("b"))
        if letter in options:
            return letter
    return None


def vote_probability(votes_a: int, votes_b: int) -> float:
    """P(A) from sampled votes, with add-one smoothing so a unanimous vote is confident but never 0 or 1."""
    return (votes_a + 1) / (votes_a + votes_b + 2)


def clamp(p: float, bounds: tuple[float, float] | None) -> float:
    if bounds is None:
        return p
    lo, hi = bounds
    return min(hi, max(lo, p))


def logit(p: float, eps: float = 1e-6) -> float:
    p = min(1 - eps, max(eps, p))
    return math.log(p / (1 - p))
