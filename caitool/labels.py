"""Soft preference labels from an (A)/(B) answer: pure functions, no I/O.

The paper (Bai et al. 2022, Sec. 4.1) takes the feedback model's log-probabilities of "(A)" and "(B)" and
normalizes them into a probability that A is the better response. Servers tokenize the answer in many ways
(" A", "A", "(A", " (A", "▁A", "ĠA", "(A)"), so every top log-prob whose token reduces to the bare letter
counts toward that option, summed in probability space. If one option is absent from the top-k list, its
probability is at most that of the least likely listed token (and at most the mass not listed): that upper
bound is used, and the record says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from caitool.providers.base import TokenLogprob

# Markers tokenizers use for a leading space (SentencePiece "▁", byte-level BPE "Ġ") and plain punctuation
# that may share a token with the letter.
_STRIP = " \t\n▁Ġ(["
_OPEN_ONLY = re.compile(r"^[\s▁Ġ]*[(\[]?[\s▁Ġ]*$")
# A full answer in free text, for vote counting: "(A)", "answer is: B", "Answer: (B)".
_ANSWER_RE = re.compile(r"answer\s+is\s*:?\s*\(?\s*([AB])\b|^\s*\(?([AB])\)?(?:\s|$|[.:,])", re.IGNORECASE)


def option_of(token: str) -> str | None:
    """'A' or 'B' when the token is one of the ways a server spells that option, else None."""
    core = token.strip(_STRIP).rstrip(")]").strip()
    if core in ("A", "B"):
        return core
    return None


def is_opening(token: str) -> bool:
    """A token that only opens the answer ("(", " (", "▁("): the letter comes in the next position."""
    return bool(_OPEN_ONLY.match(token)) and token.strip() != ""


@dataclass
class OptionScore:
    """The probability that A is preferred, from one question in one order."""

    p_a: float
    logprob_a: float | None  # log of the summed probability of A's spellings; None if bounded
    logprob_b: float | None
    ab_mass: float  # probability that fell on A or B at the answer position (bounds included)
    bounded: list[str] = field(default_factory=list)  # options missing from top-k, replaced by their bound
    position: int = 0  # which generated token carried the answer


class NoAnswer(ValueError):
    """Neither option appears where the answer should be."""


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def score_position(top: Sequence[tuple[str, float]]) -> OptionScore | None:
    """Score one token position from its (token, logprob) alternatives; None if neither option is there."""
    by_option: dict[str, list[float]] = {"A": [], "B": []}
    for token, lp in top:
        opt = option_of(token)
        if opt is not None:
            by_option[opt].append(lp)
    if not by_option["A"] and not by_option["B"]:
        return None
    probs = [math.exp(lp) for _, lp in top]
    bound = min(min(probs), max(0.0, 1.0 - sum(probs))) if probs else 0.0
    bound = max(bound, 1e-12)
    lps: dict[str, float | None] = {}
    ps: dict[str, float] = {}
    bounded = []
    for opt in ("A", "B"):
        if by_option[opt]:
            lp = _logsumexp(by_option[opt])
            lps[opt], ps[opt] = lp, math.exp(lp)
        else:
            lps[opt], ps[opt] = None, bound
            bounded.append(opt)
    total = ps["A"] + ps["B"]
    return OptionScore(
        p_a=ps["A"] / total, logprob_a=lps["A"], logprob_b=lps["B"], ab_mass=total, bounded=bounded
    )


def score_answer(tokens: Sequence[TokenLogprob], max_positions: int = 4) -> OptionScore:
    """Find the answer among the first generated tokens: skip tokens that only open a parenthesis, then
    score the first position whose alternatives name an option."""
    for i, tok in enumerate(tokens[:max_positions]):
        top = [(t.token, t.logprob) for t in tok.top] or [(tok.token, tok.logprob)]
        if not any(t == tok.token for t, _ in top):
            top.append((tok.token, tok.logprob))
        scored = score_position(top)
        if scored is not None:
            scored.position = i
            return scored
        if not is_opening(tok.token):
            break
    raise NoAnswer("no (A)/(B) option among the answer's top log-probs")


def parse_vote(text: str) -> str | None:
    """The option a free-text answer chose ("(B)", "So the answer is: A"), or None. The last explicit
    "answer is" wins, so reasoning that mentions both options before concluding is read correctly."""
    matches = list(_ANSWER_RE.finditer(text))
    explicit = [m.group(1) for m in matches if m.group(1)]
    if explicit:
        return explicit[-1].upper()
    leading = [m.group(2) for m in matches if m.group(2)]
    return leading[0].upper() if leading else None


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
