"""One choice of an OpenAI-shaped response (chat or legacy completion) as a `Choice`, log-probs included.

Two providers read this shape: `openai/` (and every OpenAI-compatible server) over HTTP, and `local/`, whose
llama-cpp-python returns the same dicts in-process. Chat log-probs are `logprobs.content[]` with
`top_logprobs` lists; completion log-probs are parallel `tokens` / `token_logprobs` / `top_logprobs` (a dict
per position). KeyError/TypeError/ValueError/AttributeError on a malformed choice are the caller's to
report; `NoText` says the choice carries no text at all.

Content may be a string or a list of content parts (the multimodal shape some proxies return even for
text): the text parts are joined, which is what such servers mean. `null` content is not an empty answer
(an empty SFT target would be trained on): it raises `NoText`, flagged `filtered` when the finish reason
says a content filter withheld it. A log-prob that is NaN or +Infinity is malformed; -Infinity is a
probability of 0 and is kept.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from caitool.providers.base import Choice, TokenLogprob, TopLogprob


class NoText(ValueError):
    def __init__(self, finish_reason: Any) -> None:
        self.filtered = finish_reason == "content_filter"
        super().__init__(
            "the server's content filter withheld the answer" if self.filtered else "the answer has no text"
        )


_LOGPROB = operator.itemgetter(1)


def _check(tok: TokenLogprob) -> TokenLogprob:
    """NaN or +Infinity anywhere in a token's log-probs makes it malformed. One C-level sum instead of a
    check per alternative (a label answer carries 20): NaN and +inf survive it (and +inf with -inf makes
    fsum raise ValueError), while -inf alone gives -inf."""
    total = math.fsum(map(_LOGPROB, tok.top)) + tok.logprob
    if total != total or total == math.inf:
        raise ValueError(f"log-probs of token {tok.token!r} are not numbers <= 0")
    return tok


def _text(v: Any, finish_reason: Any) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        raise NoText(finish_reason)
    if isinstance(v, list):
        parts = [p.get("text") for p in v if isinstance(p, dict) and p.get("type", "text") == "text"]
        texts = [p for p in parts if isinstance(p, str)]
        if texts and len(texts) == len(parts):
            return "".join(texts)
    raise ValueError(f"content of type {type(v).__name__} is not text")


def parse_choice(c: dict[str, Any], *, chat: bool) -> Choice:
    raw = c.get("logprobs") or {}
    finish_reason = c.get("finish_reason")
    lps: tuple[TokenLogprob, ...] | None = None
    if chat:
        text = _text((c.get("message") or {}).get("content"), finish_reason)
        if content := raw.get("content"):
            lps = tuple(
                _check(
                    TokenLogprob(
                        token=str(t["token"]),
                        logprob=float(t["logprob"]),  # a numpy.float32 from llama.cpp in-process
                        top=tuple(
                            TopLogprob(str(x["token"]), float(x["logprob"]))
                            for x in (t.get("top_logprobs") or [])
                        ),
                    )
                )
                for t in content
            )
    else:
        text = _text(c.get("text"), finish_reason)
        if tokens := raw.get("tokens"):
            token_lps = raw.get("token_logprobs") or [0.0] * len(tokens)
            tops = raw.get("top_logprobs") or [{}] * len(tokens)
            lps = tuple(
                _check(
                    TokenLogprob(
                        token=str(tok),
                        logprob=float(lp if lp is not None else 0.0),
                        top=tuple(TopLogprob(str(k), float(v)) for k, v in (top or {}).items()),
                    )
                )
                for tok, lp, top in zip(tokens, token_lps, tops, strict=False)
            )
    if finish_reason is not None and not isinstance(finish_reason, str):
        finish_reason = str(finish_reason)
    return Choice(text=text, finish_reason=finish_reason, logprobs=lps)
