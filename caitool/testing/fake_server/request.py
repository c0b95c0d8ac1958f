"""Reading a request: its prompt key, its prompt texts and the API key it carries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .endpoints import COMPLETIONS

SNIPPET_CHARS = 40


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_key(body: Mapping[str, Any]) -> str:
    """sha1 hex of the request's messages (with an Anthropic `system`, `[system, messages]`) or prompt."""
    if "messages" in body:
        system = body.get("system")
        src: Any = [system, body["messages"]] if system else body["messages"]
    else:
        src = body.get("prompt", "")
    return hashlib.sha1(canonical(src).encode("utf-8")).hexdigest()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def prompt_texts(kind: str, body: Mapping[str, Any]) -> tuple[str, str, str]:
    """(text matched by reply_script, text for the default reply's snippet, whole prompt text for faults)."""
    if kind == COMPLETIONS:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "\n".join(p if isinstance(p, str) else canonical(p) for p in prompt)
        elif not isinstance(prompt, str):
            prompt = canonical(prompt)
        flat = " ".join(prompt.split())
        return prompt, flat[-SNIPPET_CHARS:], prompt
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    parts = [_content_text(body.get("system"))] if body.get("system") else []
    last_user = ""
    for m in messages:
        if isinstance(m, Mapping):
            text = _content_text(m.get("content"))
            parts.append(text)
            if m.get("role") == "user":
                last_user = text
    flat = " ".join(last_user.split())
    return last_user, flat[:SNIPPET_CHARS], "\n".join(parts)


def api_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")
