"""The fake server's settings: `FakeConfig` (every knob, validated field by field) and `Active` (a config
plus what the hot path derives from it)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .answers import ANSWER_STYLES, Rule, sorted_top
from .endpoints import ENDPOINT_ALIASES, GENERATION_ENDPOINTS
from .faults import parse_misbehaviour
from .openai_api import models_payload

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


@dataclasses.dataclass
class FakeConfig:
    """Every knob of the fake server; see the package docstring. Build with `FakeConfig.build(mapping)`."""

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
    advertise_rpm: bool = False  # rpm's 429s carry x-ratelimit-limit-requests (and -remaining-requests: 0)
    # Share of flex requests (`service_tier: "flex"`) answered 429 "Resource Unavailable" (OpenAI's answer
    # when flex has no capacity), drawn per prompt and attempt from the seed, apart from the p* draw.
    p_flex_unavailable: float = 0.0
    # OpenAI's automatic prompt caching: the longest prefix of a chat request's messages (whole messages)
    # that an earlier request had, when at least `prompt_cache_min_tokens` long, is reported as
    # `usage.prompt_tokens_details.cached_tokens` (in steps of 128 tokens, as OpenAI does).
    prompt_cache: bool = False
    prompt_cache_min_tokens: int = 1024
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
    # Batches (OpenAI files + batches, Anthropic Message Batches): seconds from creation until a batch's
    # requests are answered and it ends; custom_ids whose requests expire, and a seeded rate for the
    # rest; custom_id -> HTTP status for requests that fail inside a batch.
    batch_delay_s: float = 0.0
    batch_expire: list[str] = dataclasses.field(default_factory=list)
    p_batch_expire: float = 0.0
    batch_fail: dict[str, int] = dataclasses.field(default_factory=dict)
    # Stage -> seconds a batch call hangs there (crash tests kill the client meanwhile): "upload" before a
    # file is stored, "create" after a batch is created and before the answer, "results" before results
    # are served (OpenAI output/error file content, Anthropic results).
    batch_hang: dict[str, float] = dataclasses.field(default_factory=dict)

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
        Active(cfg)  # cross-field checks (rates sum, latency range)
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
    if name in ("retry_after", "hang_s", "rpm", "batch_delay_s"):
        return _nonneg_float(name, v)
    if name in ("p_batch_expire", "p_flex_unavailable"):
        return _prob(name, v)
    if name == "batch_expire":
        if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"batch_expire must be a list of custom_ids, got {v!r}")
        return list(v)
    if name == "batch_fail":
        if not isinstance(v, Mapping) or not all(isinstance(k, str) and k for k in v):
            raise ValueError(f"batch_fail must be an object custom_id -> status, got {v!r}")
        return {k: _int(f"batch_fail[{k!r}]", s, 400, 599) for k, s in v.items()}
    if name == "batch_hang":
        stages = ("upload", "create", "results")
        if not isinstance(v, Mapping) or not all(k in stages for k in v):
            raise ValueError(f"batch_hang must map {', '.join(stages)} to seconds, got {v!r}")
        return {k: _nonneg_float(f"batch_hang[{k!r}]", s) for k, s in v.items()}
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
            parse_misbehaviour(_opt_str(name, v) or "")
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
    if name == "prompt_cache_min_tokens":
        return _int(name, v, 0, 10**9)
    if name in ("drop_logprobs", "record_bodies", "prompt_cache", "advertise_rpm"):
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


class Active:
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
        self.rules = [Rule(r) for r in cfg.reply_script]
        self.answer_top = sorted_top(cfg.answer_logprobs) if cfg.answer_logprobs else None
        self.models_payload = models_payload(cfg.models)
