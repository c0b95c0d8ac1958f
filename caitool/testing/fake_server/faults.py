"""Fault and misbehaviour injection: the seeded draws, the connection reset, and the misbehaviour modes
(what a broken or hostile server sends). `server.py` decides when a request meets one."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .endpoints import CHAT, COMPLETIONS, MESSAGES

if TYPE_CHECKING:
    from .config import FakeConfig


def draws(seed: int, key: str, attempt: int) -> tuple[float, float]:
    """Two uniforms in [0, 1) fixed by (seed, prompt key, attempt): the fault draw and the latency draw."""
    d = hashlib.sha1(f"{seed}|{key}|{attempt}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2.0**64, int.from_bytes(d[8:16], "big") / 2.0**64


def reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0) and no response at all."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# ----------------------------------------------------------------------------------------------------
# Misbehaviours: what a broken or hostile server sends (the hostile-server tests)

# name -> whether it takes an argument ("name:ARG")
MISBEHAVIOURS = {
    "ra": True,  # 429 with only `Retry-After: ARG` (86400, inf, an HTTP date), every attempt
    "ra_once": True,  # the same on each prompt's first attempt only, then a normal answer
    "ra_ms": True,  # 429 with only `retry-after-ms: ARG` (1e400, ...), every attempt
    "drip": True,  # the normal body, one byte every ARG ms
    "huge": True,  # a normal answer whose text is ARG MiB of "x"
    "huge_chunked": True,  # the same, sent chunked (no Content-Length)
    "lp": True,  # the first token's alternatives after the first get log-prob ARG
    "lp_all": True,  # the first token and all its alternatives get log-prob ARG
    "usage_str": False,  # usage counts as "12a"
    "usage_list": False,  # usage is a list
    "usage_inf": False,  # usage counts as 1e400 (written as Infinity)
    "usage_neg": False,  # usage counts of -1000000
    "content_int": False,  # message content (Anthropic: content) 12345
    "content_list": False,  # OpenAI content as a list of text parts; Anthropic: two text blocks
    "content_null": False,  # content null
    "content_filter": False,  # content null, finish_reason "content_filter"
    "content_str": False,  # Anthropic content as a bare string
    "text_int": False,  # Anthropic text block whose text is 42
    "deep_json": False,  # a 200 whose body is "[" x 200 000
    "deep_json_err": False,  # a 500 whose body is "[" x 30 000
    "choices_str": False,  # choices: ["a"]
}
MISBEHAVE_MODEL_PREFIX = "misbehave."
RETRY_AFTER_DATE_2100 = "Fri, 01 Jan 2100 00:00:00 GMT"


def parse_misbehaviour(mode: str) -> tuple[str, str]:
    """ "name" or "name:ARG" -> (name, arg); ValueError for an unknown name or a missing/bad ARG."""
    name, _, arg = mode.partition(":")
    if name not in MISBEHAVIOURS:
        raise ValueError(f"misbehave: unknown mode {name!r} (known: {', '.join(MISBEHAVIOURS)})")
    if MISBEHAVIOURS[name] and not arg:
        raise ValueError(f"misbehave: {name} needs an argument ({name}:ARG)")
    if name in ("drip", "huge", "huge_chunked", "lp", "lp_all") and arg != "nan_str":
        try:
            float(arg)
        except ValueError:
            raise ValueError(f"misbehave: {name}:{arg}: ARG must be a number") from None
    return name, arg


def misbehaviour_of(model: str, cfg: FakeConfig) -> tuple[str, str] | None:
    if model.startswith(MISBEHAVE_MODEL_PREFIX):
        try:
            return parse_misbehaviour(model[len(MISBEHAVE_MODEL_PREFIX) :])
        except ValueError:
            return None
    return parse_misbehaviour(cfg.misbehave) if cfg.misbehave else None


def _lp_value(arg: str) -> Any:
    return "nan" if arg == "nan_str" else float(arg)  # json.dumps writes nan/inf as bare NaN/Infinity


def misshape(payload: dict[str, Any], endpoint: str, name: str, arg: str) -> None:
    """Bend a normal reply in place into the misbehaviour `name`."""
    usage_bad: Any = {
        "usage_str": "12a",
        "usage_inf": float("inf"),
        "usage_neg": -1_000_000,
    }.get(name)
    if name == "usage_list":
        payload["usage"] = [1, 2]
    elif usage_bad is not None:
        payload["usage"] = {k: usage_bad for k in payload["usage"]}
    if endpoint == MESSAGES:
        content: Any = {
            "content_int": 12345,
            "content_null": None,
            "content_filter": None,
            "content_str": "a bare string",
            "content_list": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}],
            "text_int": [{"type": "text", "text": 42}],
        }.get(name, payload["content"])
        payload["content"] = content
        if name in ("huge", "huge_chunked"):
            payload["content"] = [{"type": "text", "text": "x" * int(float(arg) * 2**20)}]
        return
    if name == "choices_str":
        payload["choices"] = ["a"]
        return
    for c in payload["choices"]:
        key = "message" if endpoint == CHAT else None
        holder = c[key] if key else c
        field = "content" if key else "text"
        if name == "content_int":
            holder[field] = 12345
        elif name == "content_list":
            holder[field] = [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]
        elif name in ("content_null", "content_filter"):
            holder[field] = None
            if name == "content_filter":
                c["finish_reason"] = "content_filter"
        elif name in ("huge", "huge_chunked"):
            holder[field] = "x" * int(float(arg) * 2**20)
        elif name in ("lp", "lp_all") and c.get("logprobs"):
            value = _lp_value(arg)
            lps = c["logprobs"]
            if endpoint == CHAT and lps.get("content"):
                first = lps["content"][0]
                if name == "lp_all":
                    first["logprob"] = value
                for i, alt in enumerate(first["top_logprobs"]):
                    if i or name == "lp_all":
                        alt["logprob"] = value
            elif endpoint == COMPLETIONS and lps.get("top_logprobs"):
                if name == "lp_all":
                    lps["token_logprobs"][0] = value
                top = lps["top_logprobs"][0]
                for i, tok in enumerate(list(top)):
                    if i or name == "lp_all":
                        top[tok] = value
