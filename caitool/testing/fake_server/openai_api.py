"""The OpenAI wire shapes: chat and legacy-completion bodies with their log-probs, the model list (a
shape the Anthropic SDK accepts too), and OpenAI error bodies."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .answers import Reply, Tops, display, token_bytes, token_logprob, tops_for
from .endpoints import CHAT


def models_payload(models: Sequence[str]) -> bytes:
    data = [
        {
            "id": m,
            "object": "model",
            "type": "model",
            "created": 0,
            "created_at": "1970-01-01T00:00:00Z",
            "display_name": m,
            "owned_by": "caitool-fake",
        }
        for m in models
    ]
    return json.dumps(
        {"object": "list", "data": data, "has_more": False, "first_id": models[0], "last_id": models[-1]}
    ).encode()


_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Bad request (fake server)"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (fake server)"),
    403: ("permission_error", None, "Permission denied (fake server)"),
    404: ("invalid_request_error", "not_found", "Not found (fake server)"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake server)"),
    500: ("server_error", None, "The server had an error (fake server)"),
    503: ("server_error", None, "The server is overloaded or not ready yet (fake server)"),
    529: ("overloaded_error", None, "Overloaded (fake server)"),
}


def error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    default = (
        "server_error" if status >= 500 else "invalid_request_error",
        None,
        f"HTTP {status} (fake server)",
    )
    otype, ocode, omsg = _OPENAI_ERRORS.get(status, default)
    if code is not None:
        otype = ocode = code
    err = {"message": message or omsg, "type": otype, "param": None, "code": ocode}
    return json.dumps({"error": err}).encode()


def completion_body(
    endpoint: str,
    *,
    seq: int,
    model: Any,
    replies: Sequence[Reply],
    logprobs: bool,
    top_k: int,
    offset0: int,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A chat (`endpoint` CHAT) or legacy completions body, one choice per reply; `logprobs`: with them."""
    created = int(time.time())
    choices: list[dict[str, Any]] = []
    for idx, (text, tokens, first_top, finish) in enumerate(replies):
        lp_out: Any = None
        if logprobs:
            lp_out = (
                chat_logprobs(tokens, first_top, top_k)
                if endpoint == CHAT
                else completion_logprobs(tokens, first_top, top_k, offset0)
            )
        finish = "stop" if finish == "stop_sequence" else finish
        if endpoint == CHAT:
            message = {"role": "assistant", "content": text, "refusal": None}
            choices.append({"index": idx, "message": message, "logprobs": lp_out, "finish_reason": finish})
        else:
            choices.append({"index": idx, "text": text, "logprobs": lp_out, "finish_reason": finish})
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return {
        "id": f"{'chatcmpl' if endpoint == CHAT else 'cmpl'}-fake-{seq:08d}",
        "object": "chat.completion" if endpoint == CHAT else "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": "fp_caitool_fake",
    }


def chat_logprobs(tokens: Sequence[str], first_top: Tops | None, top_k: int) -> dict[str, Any]:
    content = []
    for j, tok in enumerate(tokens):
        tops = tops_for(j, tok, first_top)
        lp = tops[0][1] if first_top is not None and j < len(first_top) else token_logprob(j)
        top_list = [{"token": t, "logprob": v, "bytes": token_bytes(t)} for t, v in tops[:top_k]]
        content.append({"token": tok, "logprob": lp, "bytes": token_bytes(tok), "top_logprobs": top_list})
    return {"content": content, "refusal": None}


def completion_logprobs(
    tokens: Sequence[str], first_top: Tops | None, top_k: int, offset0: int
) -> dict[str, Any]:
    offsets, pos = [], offset0
    for tok in tokens:
        offsets.append(pos)
        pos += len(display(tok))
    return {
        "tokens": list(tokens),
        "token_logprobs": [tops_for(j, tok, first_top)[0][1] for j, tok in enumerate(tokens)],
        "top_logprobs": [dict(tops_for(j, tok, first_top)[:top_k]) for j, tok in enumerate(tokens)],
        "text_offset": offsets,
    }
