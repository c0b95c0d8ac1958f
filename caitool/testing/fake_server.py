"""A local HTTP server that speaks the OpenAI and Anthropic APIs, with deterministic fault injection.

It is real HTTP (aiohttp on 127.0.0.1), so the real `openai` and `anthropic` SDKs, and caitool's providers,
talk to it exactly as they talk to a hosted API. Used by the tests and by the benchmarks; never by the CLI.

Endpoints
    POST /v1/chat/completions   OpenAI chat (n, logprobs/top_logprobs, max_tokens, stop)
    POST /v1/completions        OpenAI legacy completions (n, logprobs=K, max_tokens, stop, list prompts)
    POST /v1/messages           Anthropic Messages (key as `x-api-key` or `Authorization: Bearer`)
    GET  /v1/models             model list (a shape both SDKs accept)
    GET  /_stats                counters (`?brief=1`: without the per-prompt maps); API keys never stored
    GET  /_config, POST /_config   read / update the config (JSON object, merged into the current one)
    POST /_reset                clear the counters, drop requests in flight, and set the config to the
                                startup one (constructor / command line) updated by the JSON body if any

Streaming (`stream: true`) is not implemented: such a request gets a 400.

Use from pytest::

    import openai
    import pytest
    from caitool.testing.fake_server import FakeServer

    @pytest.fixture
    def fake():
        with FakeServer(latency_ms=0) as server:   # starts on a free port in a background thread
            yield server

    def test_retry(fake):
        fake.configure(fail_first=2)               # the first 2 attempts of every prompt get 503
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="k", max_retries=0)
        ...
        assert fake.attempts_for("my record text") == 3
        assert fake.stats()["faults"]["fail_first"] == 2

    # Anthropic: anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="k", max_retries=0)

A session-scoped server plus `fake.reset(**config)` in each test is cheaper than a server per test:
reset() zeroes the counters, drops requests still in flight and sets the config back to the one given to
the constructor, updated by `config`; configure() updates the current config.

From a shell, or for the benchmarks::

    python -m caitool.testing.fake_server --port 0 --latency-ms 100-500 --p429 0.05 --retry-after 1

prints `listening on http://127.0.0.1:PORT` as its first line (flushed) and serves until SIGINT/SIGTERM.

Replies (deterministic)
    Default text `reply {i} to: {snippet}`: i is the choice index (n samples), snippet the first 40
    characters of the last user message (chat, messages) or the last 40 characters of the prompt
    (completions), whitespace collapsed. `reply_text` replaces it; `reply_script` rules (substring ->
    reply, first match wins, matched against the last user message or the whole completions prompt) take
    precedence over both.
    `answer_logprobs` ({token: logprob}) applies to requests that ask for log-probs: the reply is then the
    single token with the highest log-prob (shown with a leading "▁"/"Ġ" as a space), and the dict, sorted
    and cut to the requested top-k, is that token's top log-probs. A `reply_script` rule may carry its own
    `answer_logprobs`. `answer_style` spells that answer as real chat models do: `paren` / `space-paren`
    ("(" or " (" first, then the letter), `joined` ("(A" as one token), `prose` ("The answer is (A)");
    `ignore_n` answers one choice whatever `n` asks. Other tokens get log-probs -0.05..-0.14 and filler
    alternatives. `max_tokens` cuts
    the reply (finish_reason "length", Anthropic stop_reason "max_tokens"); `stop` / `stop_sequences` cut
    it at the first match.

Faults (all deterministic)
    Each request draws one number from sha1(seed, prompt key, attempt number): the same prompt's k-th
    attempt meets the same fault whatever the concurrency. The `p*` rates share that one draw (their sum
    must be <= 1), in the order p429, p429_quota, p500, p503, p529, p_hang, p_reset, p_truncate,
    p_empty_choices, p_garbage_answer. Before the draw, in this order: `require_key` (401, every
    endpoint), `fail_keys_containing` (substring of the prompt -> status), `rpm` (token bucket, burst of
    one second, 429 with the wait until the next token), `fail_first` (the first N attempts of each prompt
    key get `fail_status`). `fault_endpoints` and `fault_match` restrict rpm, fail_first and the p* faults
    to some endpoints / to prompts containing a substring. 4xx answers are immediate; everything else
    waits `latency_ms` first. `p_hang` sleeps `hang_s` more and then answers normally (a client with a
    shorter timeout sees a timeout; a client that disconnects frees the handler at once).

Misbehaviours (hostile-server tests)
    `misbehave="MODE"` applies MODE to every generation request; a request whose model is
    "misbehave.MODE" (`-m openai/misbehave.ra:86400`) gets MODE whatever the config says. Modes
    (`MISBEHAVIOURS`): `ra:V` / `ra_once:V` / `ra_ms:V` (a 429 with only `Retry-After: V` / on the first
    attempt only / only `retry-after-ms: V`; V `date2100` is an HTTP date in 2100), `drip:MS` (the body one
    byte every MS ms), `huge:MiB` (`huge_chunked:MiB`: without Content-Length), `lp:V` / `lp_all:V`
    (first-token log-probs set to V: -inf, nan, inf, -1e308, or nan_str for the string "nan"; written by
    json.dumps, so NaN/Infinity are bare literals),
    `usage_str|list|inf|neg`, `content_int|list|null|filter|str`, `text_int`, `deep_json`,
    `deep_json_err`, `choices_str`. `canned_body` (with `canned_status`, `canned_headers`) answers every
    generation request with that exact body.

The prompt key (`prompt_key(body)`) is the sha1 of the JSON of `messages` (chat; Anthropic:
`[system, messages]` when a system prompt is given) or of `prompt` (completions), with sorted keys and
compact separators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiohttp import web

__all__ = ["FakeConfig", "FakeServer", "build_app", "main", "prompt_key", "serve"]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = "/v1/messages"
MODELS = "/v1/models"
GENERATION_ENDPOINTS = (CHAT, COMPLETIONS, MESSAGES)
ENDPOINT_ALIASES = {"chat": CHAT, "completions": COMPLETIONS, "messages": MESSAGES, "anthropic": MESSAGES}

# The p* faults in the order in which they share one uniform draw.
P_FAULTS = (
    "p429",
    "p429_quota",
    "p500",
    "p503",
    "p529",
    "p_hang",
    "p_reset",
    "p_truncate",
    "p_empty_choices",
    "p_garbage_answer",
)

MAX_RECORDED_BODIES = 10_000
SNIPPET_CHARS = 40
PROMPT_TEXT_CHARS = 300

_T = TypeVar("_T")


# ----------------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass
class FakeConfig:
    """Every knob of the fake server; see the module docstring. Build with `FakeConfig.build(mapping)`."""

    seed: int = 0
    latency_ms: float | str = 0  # "200" or 200 (fixed) or "100-500" (uniform per request, seeded)
    models: list[str] = dataclasses.field(default_factory=lambda: ["fake-model"])
    reply_text: str | None = None
    # [[substring, reply], ...] or [{"match": s, "reply": r, "answer_logprobs": {...}}, ...] or {sub: reply}
    reply_script: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    answer_logprobs: dict[str, float] | None = None
    # How the answer is tokenized: letter (the letter first), paren / space-paren ("(" or " (" carrying
    # 0.95, then the letter drawn from answer_logprobs, with the bare letters at the opening's position low
    # and reversed), joined (single "(A"-style tokens), prose ("The answer is (A)": prose first).
    answer_style: str = "letter"
    ignore_n: bool = False  # answer one choice whatever `n` asks for (as TGI does)
    drop_logprobs: bool = False
    p429: float = 0.0
    p429_quota: float = 0.0  # 429 whose body says insufficient_quota (a 429 that must not be retried)
    retry_after: float = 1.0
    p500: float = 0.0
    p503: float = 0.0
    p529: float = 0.0
    fail_first: int = 0
    fail_status: int = 503
    p_hang: float = 0.0
    hang_s: float = 30.0
    p_reset: float = 0.0
    p_truncate: float = 0.0
    p_empty_choices: float = 0.0
    p_garbage_answer: float = 0.0
    rpm: float = 0.0  # 0: no limit
    require_key: str | None = None
    fault_endpoints: list[str] = dataclasses.field(default_factory=list)  # empty: all generation endpoints
    fault_match: str | None = None
    fail_keys_containing: dict[str, int] = dataclasses.field(default_factory=dict)
    record_bodies: bool = False
    # A misbehaviour (see MISBEHAVIOURS) for every generation request; a request whose model is
    # "misbehave.MODE" gets MODE whatever this is.
    misbehave: str | None = None
    # A canned answer sent as is to every generation request (after require_key): status, raw body, headers.
    canned_body: str | None = None
    canned_status: int = 200
    canned_headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def build(cls, updates: Mapping[str, Any], base: FakeConfig | None = None) -> FakeConfig:
        """A validated config: `base` (default: the defaults) with `updates` applied. Raises ValueError."""
        unknown = sorted(set(updates) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown fake-server config field(s): {', '.join(unknown)}")
        values = dataclasses.asdict(base if base is not None else cls())
        for name, value in updates.items():
            values[name] = _coerce_field(name, value)
        cfg = cls(**values)
        _Active(cfg)  # cross-field checks (rates sum, latency range)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _prob(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
    return float(v)


def _nonneg_float(name: str, v: Any) -> float:
    if isinstance(v, str):
        with contextlib.suppress(ValueError):
            v = float(v)
    if isinstance(v, bool) or not isinstance(v, int | float) or float(v) < 0 or math.isnan(float(v)):
        raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    return float(v)


def _int(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _opt_str(name: str, v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise ValueError(f"{name} must be a string or null, got {v!r}")
    return v


def _logprob_dict(name: str, v: Any) -> dict[str, float] | None:
    if v is None:
        return None
    if not isinstance(v, Mapping) or not v:
        raise ValueError(f"{name} must be a non-empty object token -> logprob, got {v!r}")
    out: dict[str, float] = {}
    for tok, lp in v.items():
        if not isinstance(tok, str) or isinstance(lp, bool) or not isinstance(lp, int | float) or lp > 0:
            raise ValueError(f"{name}: {tok!r} -> {lp!r} is not a token -> logprob (<= 0) pair")
        out[tok] = float(lp)
    return out


def _script(v: Any) -> list[dict[str, Any]]:
    items: list[Any] = list(v.items()) if isinstance(v, Mapping) else list(v or [])
    rules: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping):
            extra = set(item) - {"match", "reply", "answer_logprobs"}
            if extra or not isinstance(item.get("match"), str):
                raise ValueError(f"reply_script rule needs 'match' (and 'reply'/'answer_logprobs'): {item!r}")
            rule = {"match": item["match"], "reply": _opt_str("reply_script reply", item.get("reply"))}
            lps = _logprob_dict("reply_script answer_logprobs", item.get("answer_logprobs"))
            if lps is not None:
                rule["answer_logprobs"] = lps
            if rule["reply"] is None and lps is None:
                raise ValueError(f"reply_script rule needs 'reply' or 'answer_logprobs': {item!r}")
        elif isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(x, str) for x in item):
            rule = {"match": item[0], "reply": item[1]}
        else:
            raise ValueError(f"reply_script rule must be [substring, reply] or an object, got {item!r}")
        rules.append(rule)
    return rules


def _endpoints(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [x for x in v.split(",") if x.strip()]
    out = []
    for e in v or []:
        path = ENDPOINT_ALIASES.get(str(e).strip(), str(e).strip())
        if path not in GENERATION_ENDPOINTS:
            raise ValueError(
                f"fault_endpoints: unknown endpoint {e!r} (use {', '.join(GENERATION_ENDPOINTS)})"
            )
        out.append(path)
    return out


def _coerce_field(name: str, v: Any) -> Any:
    if name in P_FAULTS:
        return _prob(name, v)
    if name in ("retry_after", "hang_s", "rpm"):
        return _nonneg_float(name, v)
    if name == "seed":
        return _int(name, v, -(2**63), 2**63)
    if name == "fail_first":
        return _int(name, v, 0, 10**9)
    if name == "fail_status":
        return _int(name, v, 400, 599)
    if name == "latency_ms":
        _parse_latency(v)
        return v
    if name == "models":
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple) or not v or not all(isinstance(m, str) for m in v):
            raise ValueError(f"models must be a non-empty list of strings, got {v!r}")
        return list(v)
    if name in ("reply_text", "require_key", "fault_match", "canned_body"):
        return _opt_str(name, v)
    if name == "misbehave":
        if v is not None:
            _parse_misbehaviour(_opt_str(name, v) or "")
        return v
    if name == "canned_status":
        return _int(name, v, 100, 599)
    if name == "canned_headers":
        if not isinstance(v, Mapping) or not all(isinstance(x, str) for kv in v.items() for x in kv):
            raise ValueError(f"canned_headers must be an object of strings, got {v!r}")
        return dict(v)
    if name == "reply_script":
        return _script(v)
    if name == "answer_style":
        if v not in ANSWER_STYLES:
            raise ValueError(f"answer_style must be one of {', '.join(ANSWER_STYLES)}, got {v!r}")
        return v
    if name == "ignore_n":
        return bool(v)
    if name == "answer_logprobs":
        return _logprob_dict(name, v)
    if name in ("drop_logprobs", "record_bodies"):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be true or false, got {v!r}")
        return v
    if name == "fault_endpoints":
        return _endpoints(v)
    if name == "fail_keys_containing":
        if not isinstance(v, Mapping) or not all(isinstance(k, str) and k for k in v):
            raise ValueError(f"fail_keys_containing must be an object substring -> status, got {v!r}")
        return {k: _int(f"fail_keys_containing[{k!r}]", s, 400, 599) for k, s in v.items()}
    raise AssertionError(name)  # pragma: no cover - every field is handled above


def _parse_latency(v: Any) -> tuple[float, float]:
    """'200' / 200 -> (0.2, 0.2); '100-500' -> (0.1, 0.5) seconds."""
    try:
        if isinstance(v, bool):
            raise ValueError
        if isinstance(v, int | float):
            lo = hi = float(v)
        elif isinstance(v, str) and "-" in v.strip()[1:]:
            a, b = v.strip().split("-", 1)
            lo, hi = float(a), float(b)
        elif isinstance(v, str):
            lo = hi = float(v)
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"latency_ms must be a number or a range like '100-500', got {v!r}") from None
    if not 0 <= lo <= hi or math.isinf(hi):
        raise ValueError(f"latency_ms must be >= 0 and low <= high, got {v!r}")
    return lo / 1000.0, hi / 1000.0


def _sorted_top(lps: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(lps.items(), key=lambda kv: (-kv[1], kv[0]))


class _Rule:
    __slots__ = ("match", "reply", "top")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.match: str = raw["match"]
        lps = raw.get("answer_logprobs")
        self.top: list[tuple[str, float]] | None = _sorted_top(lps) if lps else None
        reply = raw.get("reply")
        self.reply: str = reply if reply is not None else _display(self.top[0][0]) if self.top else ""


class _Active:
    """A config plus what the hot path derives from it; replaced as a whole on every change."""

    def __init__(self, cfg: FakeConfig) -> None:
        self.cfg = cfg
        self.latency = _parse_latency(cfg.latency_ms)
        total = sum(getattr(cfg, name) for name in P_FAULTS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"the p* fault rates add up to {total:g} > 1 ({', '.join(P_FAULTS)})")
        self.edges: list[tuple[float, str]] = []
        acc = 0.0
        for name in P_FAULTS:
            p = getattr(cfg, name)
            if p > 0:
                acc += p
                self.edges.append((acc, name))
        self.fault_endpoints = frozenset(cfg.fault_endpoints or GENERATION_ENDPOINTS)
        self.rules = [_Rule(r) for r in cfg.reply_script]
        self.answer_top = _sorted_top(cfg.answer_logprobs) if cfg.answer_logprobs else None
        self.models_payload = _models_payload(cfg.models)


# ----------------------------------------------------------------------------------------------------
# Request helpers


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_key(body: Mapping[str, Any]) -> str:
    """sha1 hex of the request's messages (with an Anthropic `system`, `[system, messages]`) or prompt."""
    if "messages" in body:
        system = body.get("system")
        src: Any = [system, body["messages"]] if system else body["messages"]
    else:
        src = body.get("prompt", "")
    return hashlib.sha1(_canonical(src).encode("utf-8")).hexdigest()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def _prompt_texts(kind: str, body: Mapping[str, Any]) -> tuple[str, str, str]:
    """(text matched by reply_script, text for the default reply's snippet, whole prompt text for faults)."""
    if kind == COMPLETIONS:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "\n".join(p if isinstance(p, str) else _canonical(p) for p in prompt)
        elif not isinstance(prompt, str):
            prompt = _canonical(prompt)
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


_TOKEN_RE = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_FILLERS = (" the", " a", ",", ".", " and")
_GARBAGE_TOP = [("C", -0.02), (" C", -4.5), ("The", -5.5), (" The", -6.0), ("I", -6.5)]


def _display(token: str) -> str:
    """The text of a token: SentencePiece "▁" and byte-level BPE "Ġ" word markers become spaces."""
    return token.replace("▁", " ").replace("Ġ", " ")


def _token_logprob(j: int) -> float:
    return -round(0.05 + 0.01 * (j % 10), 4)


ANSWER_STYLES = ("letter", "paren", "space-paren", "joined", "prose")
_Tops = list[list[tuple[str, float]]]


def _letter_of(token: str) -> str:
    return token.replace("▁", " ").replace("Ġ", " ").strip(" (").rstrip(")")


def _styled_answer(top: list[tuple[str, float]], style: str) -> tuple[list[str], _Tops]:
    """The answer's tokens and each position's top log-probs (sampled token first) for a letter
    distribution `top`, spelled in `style`."""
    if style == "letter":
        return [top[0][0]], [top]
    if style == "joined":
        joined = _sorted_top({"(" + _letter_of(t): lp for t, lp in top})
        return [joined[0][0], ")"], [joined, [(")", -0.01)]]
    letters = {_letter_of(t): math.exp(lp) for t, lp in top}
    swap = {"A": "B", "B": "A"}
    # A low, reversed bare-letter minority at the opening's position (what the pre-v2 reader used to take).
    minority = [(" " + x, math.log(0.04 * letters.get(swap.get(x, x), 1e-9))) for x in letters]
    if style == "prose":
        pos0 = _sorted_top({"The": math.log(0.9), " (": math.log(0.03), **dict(minority)})
        rest = [" answer", " is", " ("]
        return ["The", *rest, top[0][0], ")"], [pos0] + [[(t, -0.01)] for t in rest] + [top, [(")", -0.01)]]
    opening = "(" if style == "paren" else " ("
    pos0 = _sorted_top({opening: math.log(0.95), **dict(minority)})
    return [opening, top[0][0], ")"], [pos0, top, [(")", -0.01)]]


def _tops_for(j: int, token: str, first_top: _Tops | None) -> list[tuple[str, float]]:
    if first_top is not None and j < len(first_top):
        return first_top[j]
    lp = _token_logprob(j)
    out = [(token, lp)]
    out.extend((f, lp - 2.5 - 0.5 * i) for i, f in enumerate(_FILLERS) if f != token)
    return out


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def _models_payload(models: Sequence[str]) -> bytes:
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
QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details (fake server)."


def _error_payload(endpoint: str, status: int, message: str | None = None, code: str | None = None) -> bytes:
    if endpoint == MESSAGES:
        etype = code or _ANTHROPIC_ERRORS.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        msg = message or f"HTTP {status} (fake server)"
        return json.dumps({"type": "error", "error": {"type": etype, "message": msg}}).encode()
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


def _draws(seed: int, key: str, attempt: int) -> tuple[float, float]:
    d = hashlib.sha1(f"{seed}|{key}|{attempt}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2.0**64, int.from_bytes(d[8:16], "big") / 2.0**64


def _reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0) and no response at all."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _api_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


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


def _parse_misbehaviour(mode: str) -> tuple[str, str]:
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


def _misbehaviour(model: str, cfg: FakeConfig) -> tuple[str, str] | None:
    if model.startswith(MISBEHAVE_MODEL_PREFIX):
        try:
            return _parse_misbehaviour(model[len(MISBEHAVE_MODEL_PREFIX) :])
        except ValueError:
            return None
    return _parse_misbehaviour(cfg.misbehave) if cfg.misbehave else None


def _lp_value(arg: str) -> Any:
    return "nan" if arg == "nan_str" else float(arg)  # json.dumps writes nan/inf as bare NaN/Infinity


def _misshape(payload: dict[str, Any], endpoint: str, name: str, arg: str) -> None:
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


# ----------------------------------------------------------------------------------------------------
# Server state and handlers (all run on the server's event loop)


class _State:
    def __init__(self, cfg: FakeConfig) -> None:
        self.base = cfg  # what reset() goes back to: the constructor's / command line's config
        self.active = _Active(cfg)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0
        self.clear()

    def clear(self) -> None:
        """Zero the counters and drop the requests still in flight (a hang left by an earlier test)."""
        for task in list(self.tasks):
            task.cancel()
        self.total = 0
        self.req_seq = 0
        self.max_in_flight = self.in_flight
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_model: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.prompts: dict[str, str] = {}
        self.faults: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.bucket = -1.0  # refilled on first use
        self.bucket_t = time.monotonic()
        self.bucket_rpm = 0.0

    def set_config(self, cfg: FakeConfig) -> None:
        self.active = _Active(cfg)

    # -- control ----------------------------------------------------------------------------------------

    def snapshot(self, brief: bool = False) -> dict[str, Any]:
        hist = Counter(self.attempts.values())
        out: dict[str, Any] = {
            "total": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_model": dict(self.by_model),
            "faults": dict(self.faults),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "distinct_prompts": len(self.attempts),
            "attempts_histogram": {str(k): v for k, v in sorted(hist.items())},
        }
        if not brief:
            out["attempts"] = dict(self.attempts)
            out["prompts"] = dict(self.prompts)
            if self.active.cfg.record_bodies:
                out["requests"] = list(self.bodies)
        return out

    def take_token(self, rpm: float) -> float | None:
        """None when a request may go; else the seconds until the bucket has a token."""
        rate = rpm / 60.0
        cap = max(1.0, rate)
        now = time.monotonic()
        if self.bucket < 0 or self.bucket_rpm != rpm:
            self.bucket, self.bucket_rpm = cap, rpm
        else:
            self.bucket = min(cap, self.bucket + (now - self.bucket_t) * rate)
        self.bucket_t = now
        if self.bucket >= 1.0:
            self.bucket -= 1.0
            return None
        return (1.0 - self.bucket) / rate

    async def handle_stats(self, request: web.Request) -> web.Response:
        brief = request.query.get("brief", "") not in ("", "0", "false")
        return web.json_response(self.snapshot(brief=brief))

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def handle_config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                self.set_config(FakeConfig.build(await self._json_body(request), self.active.cfg))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.active.cfg.to_dict())

    async def handle_reset(self, request: web.Request) -> web.Response:
        try:
            cfg = FakeConfig.build(await self._json_body(request), self.base)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.clear()
        self.set_config(cfg)
        return web.json_response({"ok": True, "config": cfg.to_dict()})

    # -- API --------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        self.req_seq += 1
        rid = f"req_fake_{self.req_seq:08d}"
        return {"x-request-id": rid, "request-id": rid}

    def _error(
        self,
        endpoint: str,
        status: int,
        message: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.by_status[status] += 1
        h = self._headers()
        if headers:
            h.update(headers)
        body = _error_payload(endpoint, status, message, code)
        return web.Response(status=status, body=body, content_type="application/json", headers=h)

    def _rate_limited(self, endpoint: str, wait: float, quota: bool = False) -> web.Response:
        headers = {"retry-after": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
        if quota:
            return self._error(endpoint, 429, QUOTA_MESSAGE, "insufficient_quota", headers)
        return self._error(endpoint, 429, headers=headers)

    def _auth_failed(self, request: web.Request, active: _Active) -> bool:
        required = active.cfg.require_key
        return required is not None and _api_key(request) != required

    async def handle_models(self, request: web.Request) -> web.Response:
        self.total += 1
        self.by_endpoint[MODELS] += 1
        if self._auth_failed(request, self.active):
            self.faults["require_key"] += 1
            return self._error(CHAT, 401)
        self.by_status[200] += 1
        return web.Response(body=self.active.models_payload, content_type="application/json")

    async def handle_generate(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._generate(request)
        finally:
            self.in_flight -= 1
            if task is not None:
                self.tasks.discard(task)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.path
        active = self.active
        cfg = active.cfg
        self.total += 1
        self.by_endpoint[endpoint] += 1
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(endpoint, 400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return self._error(endpoint, 400, "the request body must be a JSON object")
        key = prompt_key(body)
        self.attempts[key] += 1
        attempt = self.attempts[key]
        match_text, snippet, full_text = _prompt_texts(endpoint, body)
        if key not in self.prompts:
            self.prompts[key] = (
                full_text[-PROMPT_TEXT_CHARS:] if endpoint == COMPLETIONS else match_text[:300]
            )
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        self.by_model[model] += 1
        if cfg.record_bodies and len(self.bodies) < MAX_RECORDED_BODIES:
            self.bodies.append({"endpoint": endpoint, "key": key, "attempt": attempt, "body": body})

        if self._auth_failed(request, active):
            self.faults["require_key"] += 1
            return self._error(endpoint, 401)
        if body.get("stream"):
            return self._error(endpoint, 400, "stream=true is not supported by the fake server")
        if cfg.canned_body is not None:
            self.faults["canned"] += 1
            self.by_status[cfg.canned_status] += 1
            return web.Response(
                status=cfg.canned_status,
                body=cfg.canned_body.encode("utf-8", "surrogatepass"),
                content_type="application/json",
                headers={**self._headers(), **cfg.canned_headers},
            )
        misbehaviour = _misbehaviour(model, cfg)
        if misbehaviour is not None:
            self.faults[misbehaviour[0]] += 1
            early = self._misbehave_early(endpoint, misbehaviour, attempt)
            if early is not None:
                return early
        for sub, status in cfg.fail_keys_containing.items():
            if sub in full_text:
                self.faults["fail_keys_containing"] += 1
                if status >= 500:
                    await self._sleep_latency(active, key, attempt)
                return self._error(endpoint, status, f"this prompt always fails with {status} (fake server)")

        fault: str | None = None
        if endpoint in active.fault_endpoints and (cfg.fault_match is None or cfg.fault_match in full_text):
            if cfg.rpm > 0:
                wait = self.take_token(cfg.rpm)
                if wait is not None:
                    self.faults["rpm"] += 1
                    return self._rate_limited(endpoint, wait)
            if attempt <= cfg.fail_first:
                self.faults["fail_first"] += 1
                if cfg.fail_status == 429:
                    return self._rate_limited(endpoint, cfg.retry_after)
                if cfg.fail_status >= 500:
                    await self._sleep_latency(active, key, attempt)
                return self._error(endpoint, cfg.fail_status)
            u = _draws(cfg.seed, key, attempt)[0]
            for edge, name in active.edges:
                if u < edge:
                    fault = name
                    break
        if fault is not None:
            self.faults[fault] += 1
            if fault == "p429":
                return self._rate_limited(endpoint, cfg.retry_after)
            if fault == "p429_quota":
                return self._rate_limited(endpoint, cfg.retry_after, quota=True)
        await self._sleep_latency(active, key, attempt)
        if fault in ("p500", "p503", "p529"):
            return self._error(endpoint, int(fault[1:]))
        if fault == "p_hang":
            await asyncio.sleep(cfg.hang_s)
        if fault == "p_reset":
            _reset_connection(request)
            return web.Response(status=200)  # never sent: aiohttp drops it on the closed transport

        payload = _build_reply(
            endpoint,
            body,
            active,
            match_text,
            snippet,
            empty=fault == "p_empty_choices",
            garbage=fault == "p_garbage_answer",
            seq=self.req_seq + 1,
        )
        if misbehaviour is not None:
            _misshape(payload, endpoint, *misbehaviour)
        data = json.dumps(payload).encode()
        headers = self._headers()
        if misbehaviour is not None and misbehaviour[0] == "drip":
            return await self._drip(request, data, headers, float(misbehaviour[1]) / 1000)
        if misbehaviour is not None and misbehaviour[0] == "huge_chunked":
            return await self._drip(request, data, headers, 0.0, chunk=2**16, chunked=True)
        if fault == "p_truncate":
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_type = "application/json"
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.close()  # flushes the half body, then closes: the client sees a short read
            return resp
        self.by_status[200] += 1
        return web.Response(body=data, content_type="application/json", headers=headers)

    def _misbehave_early(
        self, endpoint: str, misbehaviour: tuple[str, str], attempt: int
    ) -> web.Response | None:
        """The misbehaviours that replace the answer (429s, deep JSON); None for those that bend it."""
        name, arg = misbehaviour
        if name in ("ra", "ra_ms") or (name == "ra_once" and attempt == 1):
            value = RETRY_AFTER_DATE_2100 if arg == "date2100" else arg
            header = "retry-after-ms" if name == "ra_ms" else "retry-after"
            return self._error(endpoint, 429, headers={header: value})
        if name in ("deep_json", "deep_json_err"):
            status = 200 if name == "deep_json" else 500
            self.by_status[status] += 1
            depth = 200_000 if name == "deep_json" else 30_000
            return web.Response(status=status, body=b"[" * depth, content_type="application/json")
        return None

    async def _drip(
        self,
        request: web.Request,
        data: bytes,
        headers: Mapping[str, str],
        every_s: float,
        *,
        chunk: int = 1,
        chunked: bool = False,
    ) -> web.StreamResponse:
        """A 200 whose body comes `chunk` bytes every `every_s` seconds (a broken proxy trickling bytes);
        `chunked`: without Content-Length (chunked transfer encoding)."""
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = "application/json"
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(data)
        await resp.prepare(request)
        for i in range(0, len(data), chunk):
            await resp.write(data[i : i + chunk])
            await asyncio.sleep(every_s)
        self.by_status[200] += 1
        return resp

    async def _sleep_latency(self, active: _Active, key: str, attempt: int) -> None:
        lo, hi = active.latency
        if hi <= 0:
            return
        delay = lo if hi == lo else lo + (hi - lo) * _draws(active.cfg.seed, key, attempt)[1]
        await asyncio.sleep(delay)


def _build_reply(
    endpoint: str,
    body: Mapping[str, Any],
    active: _Active,
    match_text: str,
    snippet: str,
    *,
    empty: bool,
    garbage: bool,
    seq: int,
) -> dict[str, Any]:
    cfg = active.cfg
    model = body.get("model") if isinstance(body.get("model"), str) else cfg.models[0]
    created = int(time.time())
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

    prompt_text_tokens = max(1, len(match_text) // 4) if endpoint != COMPLETIONS else 0
    n = max(1, _safe_int(body.get("n"), 1)) if endpoint != MESSAGES and not cfg.ignore_n else 1
    n_prompts, offset0 = 1, 0
    if endpoint == COMPLETIONS:
        prompt = body.get("prompt", "")
        prompts = prompt if isinstance(prompt, list) and prompt and isinstance(prompt[0], str) else [prompt]
        n_prompts = len(prompts)
        prompt_text_tokens = sum(
            max(1, len(p if isinstance(p, str) else _canonical(p)) // 4) for p in prompts
        )
        offset0 = len(prompts[0]) if isinstance(prompts[0], str) else 0

    replies = (
        []
        if empty
        else [
            _reply_tokens(active, match_text, snippet, idx % n, wants_lp, garbage, limit, stops)
            for idx in range(n * n_prompts)
        ]
    )
    completion_tokens = sum(len(r[1]) for r in replies)

    if endpoint == MESSAGES:
        text, tokens, _, finish = replies[0] if replies else ("", [], None, "stop")
        return {
            "id": f"msg_fake_{seq:08d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}] if replies else [],
            "stop_reason": {"length": "max_tokens", "stop_sequence": "stop_sequence"}.get(finish, "end_turn"),
            "stop_sequence": stops[0] if finish == "stop_sequence" and stops else None,
            "usage": {
                "input_tokens": prompt_text_tokens,
                "output_tokens": completion_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    choices: list[dict[str, Any]] = []
    for idx, (text, tokens, first_top, finish) in enumerate(replies):
        lp_out: Any = None
        if wants_lp and not cfg.drop_logprobs:
            lp_out = (
                _chat_logprobs(tokens, first_top, top_k)
                if endpoint == CHAT
                else _completion_logprobs(tokens, first_top, top_k, offset0)
            )
        finish = "stop" if finish == "stop_sequence" else finish
        if endpoint == CHAT:
            message = {"role": "assistant", "content": text, "refusal": None}
            choices.append({"index": idx, "message": message, "logprobs": lp_out, "finish_reason": finish})
        else:
            choices.append({"index": idx, "text": text, "logprobs": lp_out, "finish_reason": finish})
    usage = {
        "prompt_tokens": prompt_text_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_text_tokens + completion_tokens,
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


def _chat_logprobs(tokens: Sequence[str], first_top: _Tops | None, top_k: int) -> dict[str, Any]:
    content = []
    for j, tok in enumerate(tokens):
        tops = _tops_for(j, tok, first_top)
        lp = tops[0][1] if first_top is not None and j < len(first_top) else _token_logprob(j)
        top_list = [{"token": t, "logprob": v, "bytes": _bytes(t)} for t, v in tops[:top_k]]
        content.append({"token": tok, "logprob": lp, "bytes": _bytes(tok), "top_logprobs": top_list})
    return {"content": content, "refusal": None}


def _completion_logprobs(
    tokens: Sequence[str], first_top: _Tops | None, top_k: int, offset0: int
) -> dict[str, Any]:
    offsets, pos = [], offset0
    for tok in tokens:
        offsets.append(pos)
        pos += len(_display(tok))
    return {
        "tokens": list(tokens),
        "token_logprobs": [_tops_for(j, tok, first_top)[0][1] for j, tok in enumerate(tokens)],
        "top_logprobs": [dict(_tops_for(j, tok, first_top)[:top_k]) for j, tok in enumerate(tokens)],
        "text_offset": offsets,
    }


def _safe_int(v: Any, default: int) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return default


def _reply_tokens(
    active: _Active,
    match_text: str,
    snippet: str,
    index: int,
    wants_lp: bool,
    garbage: bool,
    limit: int,
    stops: Sequence[str],
) -> tuple[str, list[str], _Tops | None, str]:
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
    answer_tops: _Tops | None = None
    if first_top is not None and wants_lp:
        tokens, answer_tops = _styled_answer(first_top, "letter" if garbage else active.cfg.answer_style)
        text = "".join(_display(t) for t in tokens)
    else:
        for s in stops:
            cut = text.find(s)
            if cut >= 0:
                text, finish = text[:cut], "stop_sequence"
        tokens = _TOKEN_RE.findall(text)
    if limit > 0 and len(tokens) > limit:
        tokens = tokens[:limit]
        text = "".join(_display(t) for t in tokens)
        finish = "length"
    return text, tokens, answer_tops, finish


def build_app(state: _State) -> web.Application:
    app = web.Application(client_max_size=256 * 1024 * 1024)
    for path in GENERATION_ENDPOINTS:
        app.router.add_post(path, state.handle_generate)
    app.router.add_get(MODELS, state.handle_models)
    app.router.add_get("/_stats", state.handle_stats)
    app.router.add_get("/_config", state.handle_config)
    app.router.add_post("/_config", state.handle_config)
    app.router.add_post("/_reset", state.handle_reset)
    return app


async def _start_runner(state: _State, host: str, port: int) -> tuple[web.AppRunner, int]:
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the fake server binds to loopback only")
    runner = web.AppRunner(
        build_app(state),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=0.5,
        keepalive_timeout=75.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def _shutdown(state: _State, runner: web.AppRunner) -> None:
    for task in list(state.tasks):
        task.cancel()
    await runner.cleanup()


# ----------------------------------------------------------------------------------------------------
# Python API


class FakeServer:
    """The fake API on 127.0.0.1:<free port>, served by its own event loop in a daemon thread."""

    def __init__(self, **config: Any) -> None:
        self._state = _State(FakeConfig.build(config))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # lifecycle -----------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Start serving; returns the base url "http://127.0.0.1:PORT"."""
        if self._thread is not None:
            raise RuntimeError("FakeServer is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, bound = loop.run_until_complete(_start_runner(self._state, "127.0.0.1", port))
                self._url = f"http://127.0.0.1:{bound}"
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(_shutdown(self._state, self._runner))
                loop.close()

        thread = threading.Thread(target=run, name="caitool-fake-server", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        assert self._url is not None
        return self._url

    def stop(self) -> None:
        """Stop serving; in-flight requests (hangs included) are cancelled. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self._url = None

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # control -------------------------------------------------------------------------------------------

    def _in_loop(self, fn: Callable[[], _T]) -> _T:
        loop = self._loop
        if loop is None or self._thread is threading.current_thread():
            return fn()

        async def call() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def configure(self, **config: Any) -> None:
        """Update some config fields (the others keep their values). Raises ValueError on a bad field."""
        cfg = FakeConfig.build(config, self._state.active.cfg)
        self._in_loop(lambda: self._state.set_config(cfg))

    def reset(self, **config: Any) -> None:
        """Zero the counters, drop in-flight requests, set the config to the constructor's plus `config`."""
        cfg = FakeConfig.build(config, self._state.base)

        def do() -> None:
            self._state.clear()
            self._state.set_config(cfg)

        self._in_loop(do)

    def stats(self, brief: bool = False) -> dict[str, Any]:
        """A snapshot of the counters (see `GET /_stats`)."""
        return self._in_loop(lambda: self._state.snapshot(brief=brief))

    def attempts_for(self, substring: str) -> int:
        """Attempts summed over the prompts whose recorded text (last user message / prompt tail) has it."""

        def count() -> int:
            st = self._state
            return sum(n for k, n in st.attempts.items() if substring in st.prompts.get(k, ""))

        return self._in_loop(count)

    @property
    def config(self) -> FakeConfig:
        return self._state.active.cfg

    # addresses -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeServer is not running (call start() or use it as a context manager)")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url


# ----------------------------------------------------------------------------------------------------
# Command line


async def serve(
    config: FakeConfig, host: str = "127.0.0.1", port: int = 0, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM (or cancellation); `ready(url)` is called once listening."""
    state = _State(config)
    runner, bound = await _start_runner(state, host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound}"
    (ready or _print_listening)(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await _shutdown(state, runner)


def _print_listening(url: str) -> None:
    sys.stdout.write(f"listening on {url}\n")
    sys.stdout.flush()


_JSON_FIELDS = (
    "models",
    "reply_script",
    "answer_logprobs",
    "fault_endpoints",
    "fail_keys_containing",
    "canned_headers",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m caitool.testing.fake_server",
        description="Fake OpenAI/Anthropic API server with deterministic fault injection (loopback only).",
        epilog="Every config field is a flag (underscores as dashes). JSON-valued fields take JSON text; "
        "models and fault_endpoints also take a comma-separated list.",
    )
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default), localhost or ::1")
    p.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    p.add_argument("--config", default=None, help="JSON object of config fields, or the path of a JSON file")
    defaults = FakeConfig()
    for f in dataclasses.fields(FakeConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action="store_true", default=None, help=f"(default: {default})")
        else:
            p.add_argument(
                flag, dest=f.name, default=None, metavar=f.name.upper(), help=f"(default: {default!r})"
            )
    return p


def _flag_value(name: str, text: str) -> Any:
    if name in _JSON_FIELDS:
        stripped = text.strip()
        if stripped[:1] in ("[", "{", '"') or stripped == "null":
            return json.loads(stripped)
        if name in ("models", "fault_endpoints"):
            return [x.strip() for x in text.split(",") if x.strip()]
        raise ValueError(f"--{name.replace('_', '-')} takes JSON text")
    if name in P_FAULTS or name in ("retry_after", "hang_s", "rpm"):
        return float(text)
    if name in ("seed", "fail_first", "fail_status", "canned_status"):
        return int(text)
    return text  # latency_ms, reply_text, require_key, fault_match, misbehave, canned_body


def config_from_args(argv: Sequence[str] | None = None) -> tuple[FakeConfig, str, int]:
    args = _parser().parse_args(argv)
    updates: dict[str, Any] = {}
    if args.config:
        text = args.config
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError("--config must be a JSON object")
        updates.update(loaded)
    for name in FakeConfig.field_names():
        value = getattr(args, name)
        if value is not None:
            updates[name] = value if isinstance(value, bool) else _flag_value(name, value)
    return FakeConfig.build(updates), args.host, args.port


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, host, port = config_from_args(argv)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"fake_server: {exc}\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, host, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
