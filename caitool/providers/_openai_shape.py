"""One choice of an OpenAI-shaped response (chat or legacy completion) as a `Choice`, log-probs included.

Two providers read this shape: `openai/` (and every OpenAI-compatible server) over HTTP, and `local/`, whose
llama-cpp-python returns the same dicts in-process. Chat log-probs are `logprobs.content[]` with
`top_logprobs` lists; completion log-probs are parallel `tokens` / `token_logprobs` / `top_logprobs` (a dict
per position). KeyError/TypeError/ValueError on a malformed choice are the caller's to report.
"""

from __future__ import annotations

from typing import Any

from caitool.providers.base import Choice, TokenLogprob, TopLogprob


def parse_choice(c: dict[str, Any], *, chat: bool) -> Choice:
    raw = c.get("logprobs") or {}
    lps: tuple[TokenLogprob, ...] | None = None
    if chat:
        text = (c.get("message") or {}).get("content")
        if content := raw.get("content"):
            lps = tuple(
                TokenLogprob(
                    token=str(t["token"]),
                    logprob=float(t["logprob"]),  # a numpy.float32 from llama.cpp in-process
                    top=tuple(
                        TopLogprob(str(x["token"]), float(x["logprob"]))
                        for x in (t.get("top_logprobs") or [])
                    ),
                )
                for t in content
            )
    else:
        text = c.get("text")
        if tokens := raw.get("tokens"):
            token_lps = raw.get("token_logprobs") or [0.0] * len(tokens)
            tops = raw.get("top_logprobs") or [{}] * len(tokens)
            lps = tuple(
                TokenLogprob(
                    token=str(tok),
                    logprob=float(lp if lp is not None else 0.0),
                    top=tuple(TopLogprob(str(k), float(v)) for k, v in (top or {}).items()),
                )
                for tok, lp, top in zip(tokens, token_lps, tops, strict=False)
            )
    return Choice(text=text or "", finish_reason=c.get("finish_reason"), logprobs=lps)
