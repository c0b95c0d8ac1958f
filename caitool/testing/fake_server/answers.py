"""A reply's text and tokens: the default and scripted replies, `max_tokens` and `stop` cuts, each token's
log-prob and top alternatives, and the answer styles that spell an (A)/(B) answer as real models do.

Nothing here knows a wire format; `openai_api.py` and `anthropic_api.py` put these tokens into bodies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Active

_TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_FILLERS = (" the", " a", ",", ".", " and")
_GARBAGE_TOP = [("C", -0.02), (" C", -4.5), ("The", -5.5), (" The", -6.0), ("I", -6.5)]


def display(token: str) -> str:
    """The text of a token: SentencePiece "▁" and byte-level BPE "Ġ" word markers become spaces."""
    return token.replace("▁", " ").replace("Ġ", " ")


def token_logprob(j: int) -> float:
    return -round(0.05 + 0.01 * (j % 10), 4)


ANSWER_STYLES = ("letter", "paren", "space-paren", "joined", "prose")
Tops = list[list[tuple[str, float]]]
# (text, tokens, the answer tokens' top log-probs or None, finish_reason: stop/length/stop_sequence)
Reply = tuple[str, list[str], Tops | None, str]


def _letter_of(token: str) -> str:
    return token.replace("▁", " ").replace("Ġ", " ").strip(" (").rstrip(")")


def _styled_answer(top: list[tuple[str, float]], style: str) -> tuple[list[str], Tops]:
    """The answer's tokens and each position's top log-probs (sampled token first) for a letter
    distribution `top`, spelled in `style`."""
    if style == "letter":
        return [top[0][0]], [top]
    if style == "joined":
        joined = sorted_top({"(" + _letter_of(t): lp for t, lp in top})
        return [joined[0][0], ")"], [joined, [(")", -0.01)]]
    letters = {_letter_of(t): math.exp(lp) for t, lp in top}
    swap = {"A": "B", "B": "A"}
    # A low, reversed bare-letter minority at the opening's position (what the pre-v2 reader used to take).
    minority = [(" " + x, math.log(0.04 * letters.get(swap.get(x, x), 1e-9))) for x in letters]
    if style == "prose":
        pos0 = sorted_top({"The": math.log(0.9), " (": math.log(0.03), **dict(minority)})
        rest = [" answer", " is", " ("]
        return ["The", *rest, top[0][0], ")"], [pos0] + [[(t, -0.01)] for t in rest] + [top, [(")", -0.01)]]
    opening = "(" if style == "paren" else " ("
    pos0 = sorted_top({opening: math.log(0.95), **dict(minority)})
    return [opening, top[0][0], ")"], [pos0, top, [(")", -0.01)]]


def tops_for(j: int, token: str, first_top: Tops | None) -> list[tuple[str, float]]:
    if first_top is not None and j < len(first_top):
        return first_top[j]
    lp = token_logprob(j)
    out = [(token, lp)]
    out.extend((f, lp - 2.5 - 0.5 * i) for i, f in enumerate(_FILLERS) if f != token)
    return out


def token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def sorted_top(lps: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(lps.items(), key=lambda kv: (-kv[1], kv[0]))


class Rule:
    __slots__ = ("match", "reply", "top")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.match: str = raw["match"]
        lps = raw.get("answer_logprobs")
        self.top: list[tuple[str, float]] | None = sorted_top(lps) if lps else None
        reply = raw.get("reply")
        self.reply: str = reply if reply is not None else display(self.top[0][0]) if self.top else ""


def reply_tokens(
    active: Active,
    match_text: str,
    snippet: str,
    index: int,
    wants_lp: bool,
    garbage: bool,
    limit: int,
    stops: Sequence[str],
) -> Reply:
    """(text, tokens, the answer tokens' top log-probs or None, finish_reason: stop/length/stop_sequence)."""
    first_top: list[tuple[str, float]] | None = None
    if garbage:
        text, first_top = "C", _GARBAGE_TOP
    else:
        rule = next((r for r in active.rules if r.match in match_text), None)
        if rule is not None:
            text, first_top = rule.reply, rule.top
        else:
            reply_text = active.cfg.reply_text
            text = reply_text if reply_text is not None else f"reply {index} to: {snippet}"
        if first_top is None and wants_lp:
            first_top = active.answer_top
    finish = "stop"
    answer_tops: Tops | None = None
    if first_top is not None and wants_lp:
        tokens, answer_tops = _styled_answer(first_top, "letter" if garbage else active.cfg.answer_style)
        text = "".join(display(t) for t in tokens)
    else:
        for s in stops:
            cut = text.find(s)
            if cut >= 0:
                text, finish = text[:cut], "stop_sequence"
        tokens = _TOKEN_RE.findall(text)
    if limit > 0 and len(tokens) > limit:
        tokens = tokens[:limit]
        text = "".join(display(t) for t in tokens)
        finish = "length"
    return text, tokens, answer_tops, finish
