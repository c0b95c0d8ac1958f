"""The Anthropic wire shapes: Messages bodies and Anthropic error bodies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .answers import Reply

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    etype = code or _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    msg = message or f"HTTP {status} (fake server)"
    return json.dumps({"type": "error", "error": {"type": etype, "message": msg}}).encode()


def message_body(
    *,
    seq: int,
    model: Any,
    replies: Sequence[Reply],
    stops: Sequence[str],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A Messages body: the first reply (Messages has no `n`), or no content at all when there is none."""
    text, _, _, finish = replies[0] if replies else ("", [], None, "stop")
    return {
        "id": f"msg_fake_{seq:08d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if replies else [],
        "stop_reason": {"length": "max_tokens", "stop_sequence": "stop_sequence"}.get(finish, "end_turn"),
        "stop_sequence": stops[0] if finish == "stop_sequence" and stops else None,
        "usage": {
            "input_tokens": prompt_tokens,
            "output_tokens": completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
