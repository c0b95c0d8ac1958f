"""One generation request's reply: what the request asks for (log-probs, `n`, `max_tokens`, `stop`, the
prompts of a completions list), the reply tokens for each choice, then the endpoint's wire shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import anthropic_api, openai_api
from .answers import reply_tokens
from .config import Active
from .endpoints import CHAT, COMPLETIONS, MESSAGES
from .request import canonical


def build_reply(
    endpoint: str,
    body: Mapping[str, Any],
    active: Active,
    match_text: str,
    snippet: str,
    *,
    empty: bool,
    garbage: bool,
    seq: int,
) -> dict[str, Any]:
    """The JSON body answering `body` at `endpoint`; `empty`: no choices, `garbage`: a "C" answer."""
    cfg = active.cfg
    model = body.get("model") if isinstance(body.get("model"), str) else cfg.models[0]
    if endpoint == CHAT:
        wants_lp = bool(body.get("logprobs"))
        top_k = _safe_int(body.get("top_logprobs"), 0)
    elif endpoint == COMPLETIONS:
        wants_lp = body.get("logprobs") is not None
        top_k = _safe_int(body.get("logprobs"), 0)
    else:
        wants_lp, top_k = False, 0
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    limit = _safe_int(max_tokens, 0) if max_tokens is not None else 0
    stops_raw = body.get("stop_sequences" if endpoint == MESSAGES else "stop")
    stops = (
        [stops_raw]
        if isinstance(stops_raw, str)
        else [s for s in stops_raw or [] if isinstance(s, str) and s]
    )

    # The whole prompt (system and every message), about 4 characters a token, as a hosted API bills it.
    prompt_text_tokens = max(1, prompt_chars(body) // 4) if endpoint != COMPLETIONS else 0
    n = max(1, _safe_int(body.get("n"), 1)) if endpoint != MESSAGES and not cfg.ignore_n else 1
    n_prompts, offset0 = 1, 0
    if endpoint == COMPLETIONS:
        prompt = body.get("prompt", "")
        prompts = prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], str) else [prompt]
        n_prompts = len(prompts)
        prompt_text_tokens = sum(max(1, len(p if isinstance(p, str) else canonical(p)) // 4) for p in prompts)
        offset0 = len(prompts[0]) if isinstance(prompts[0], str) else 0

    replies = (
        []
        if empty
        else [
            reply_tokens(active, match_text, snippet, idx % n, wants_lp, garbage, limit, stops)
            for idx in range(n * n_prompts)
        ]
    )
    completion_tokens = sum(len(r[1]) for r in replies)

    if endpoint == MESSAGES:
        return anthropic_api.message_body(
            seq=seq,
            model=model,
            replies=replies,
            stops=stops,
            prompt_tokens=prompt_text_tokens,
            completion_tokens=completion_tokens,
        )
    return openai_api.completion_body(
        endpoint,
        seq=seq,
        model=model,
        replies=replies,
        logprobs=wants_lp and not cfg.drop_logprobs,
        top_k=top_k,
        offset0=offset0,
        prompt_tokens=prompt_text_tokens,
        completion_tokens=completion_tokens,
    )


def message_chars(message: Any) -> int:
    content = message.get("content") if isinstance(message, Mapping) else message
    return len(content) if isinstance(content, str) else len(canonical(content))


def prompt_chars(body: Mapping[str, Any]) -> int:
    """Characters of a chat or Messages request's prompt: its system text and every message."""
    messages = body.get("messages")
    total = sum(message_chars(m) for m in messages) if isinstance(messages, list) else 0
    system = body.get("system")
    return total + (message_chars(system) if system else 0)


def _safe_int(v: Any, default: int) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return default
