"""Shared helpers for HTTP providers: Retry-After parsing, status classification, secret redaction, and the
response size cap and byte-counting transport for the SDKs' httpx clients."""

from __future__ import annotations

import email.utils
import math
import os
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from caitool.errors import ProviderError, UsageError

# Worth another attempt: request timeout, conflict, rate limit, and 5xx (529 = Anthropic overloaded).
RETRYABLE_STATUSES = {408, 409, 429}

# A 429 that means "out of money", not "too fast": retrying only pays for nothing.
QUOTA_CODES = ("insufficient_quota", "enforced_spend_limit_reached", "billing")

# A success body larger than this fails its request (not retried): a server that ignores max_tokens or loops
# must not be able to make one request buffer gigabytes. $CAITOOL_MAX_RESPONSE_MB overrides it.
DEFAULT_MAX_RESPONSE_MB = 64.0

AUTH_HINT = "check the API key (environment variable or --api-key)"

_URL_USERINFO = re.compile(r"(://)[^/@\s]+@")
# key=..., api-key=..., access_token=..., sig=... in any URL query string
_URL_SECRET_PARAM = re.compile(r"([?&][^=&#\s]*(?:key|token|secret|password|sig)[^=&#\s]*=)[^&#\s]+", re.I)


def max_response_bytes() -> int:
    try:
        mb = float(os.environ.get("CAITOOL_MAX_RESPONSE_MB", DEFAULT_MAX_RESPONSE_MB))
    except ValueError:
        mb = DEFAULT_MAX_RESPONSE_MB
    return int(mb * 2**20) if math.isfinite(mb) and mb > 0 else int(DEFAULT_MAX_RESPONSE_MB * 2**20)


def too_large(provider: str, limit: int) -> ProviderError:
    return ProviderError(
        f"{provider}: response body larger than {limit / 2**20:g} MiB",
        retryable=False,
        hint="raise CAITOOL_MAX_RESPONSE_MB if the server's answers really are this large",
    )


def url_secrets(base_url: str | None, api_key: str | None) -> tuple[str, ...]:
    """The strings no message may show: the API key, the base URL's user-info, its query values."""
    found = [api_key] if api_key else []
    if base_url:
        parts = urlsplit(base_url)
        found += [parts.username or "", parts.password or ""]
        found += [v for _, v in parse_qsl(parts.query)]
    return tuple(s for s in found if len(s) >= 3)  # a 1-2 character value would blank out half a message


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with URL user-info, key-like URL parameters and each of `secrets` replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _URL_SECRET_PARAM.sub(r"\1***", _URL_USERINFO.sub(r"\1***@", text))


def check_credentials(spec: str, base_url: str | None, api_key: str | None) -> None:
    """A base URL with user:password and an API key both present is ambiguous (aiohttp refuses it, httpx sends
    Basic auth and drops the key): a usage error naming both, instead of a traceback or a silent choice."""
    if base_url and api_key and "@" in base_url:
        parts = urlsplit(base_url)
        if parts.username or parts.password:
            raise UsageError(
                f"{spec}: the base URL carries user:password and an API key is also set",
                hint="remove user:password from --base-url, or unset the API key (--api-key or environment)",
            )


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asks to wait (`retry-after-ms`, else `Retry-After` in seconds or as an HTTP date),
    possibly `inf`; NaN, negative and past dates are 0. The retry layer caps what it honours."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value_ms = float(ms) / 1000
            return value_ms if value_ms > 0 else 0.0  # NaN compares false: 0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return seconds if seconds > 0 else 0.0
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time())
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def status_error(
    provider: str, status: int, message: str, headers: Mapping[str, str] | None, body: object = None
) -> ProviderError:
    text = f"{provider}: HTTP {status}: {message}"
    body_text = str(body or "") + message
    if status == 429 and any(code in body_text for code in QUOTA_CODES):
        return ProviderError(
            text, retryable=False, status=status, hint="the account is out of quota or credit"
        )
    if status in (401, 403):
        return ProviderError(text, retryable=False, status=status, hint=AUTH_HINT)
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return ProviderError(
        text,
        retryable=retryable,
        status=status,
        retry_after=parse_retry_after(headers),
        rate_limited=status == 429,
        limits=advertised_limits(headers) if status == 429 else (None, None),
    )


# Per-minute limits as OpenAI (x-ratelimit-limit-*) and Anthropic (anthropic-ratelimit-*-limit) state them.
_REQUEST_LIMIT_HEADERS = ("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit")
_TOKEN_LIMIT_HEADERS = (
    "x-ratelimit-limit-tokens",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-tokens-limit",
)


def advertised_limits(headers: Mapping[str, str] | None) -> tuple[float | None, float | None]:
    """(requests, tokens) per minute from a response's rate-limit headers; None where absent or unreadable."""

    def first(names: tuple[str, ...]) -> float | None:
        for name in names:
            try:
                value = float((headers or {}).get(name) or "nan")
            except ValueError:
                continue
            if math.isfinite(value) and value > 0:
                return value
        return None

    return first(_REQUEST_LIMIT_HEADERS), first(_TOKEN_LIMIT_HEADERS)


def as_count(value: Any) -> int | None:
    """A token count from a server's `usage`: a non-negative integer (or an integer-valued float or a digit
    string), else None (the caller counts 0 and says so once)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


class ResponseTooLarge(Exception):
    """Raised by `capped_httpx_client`'s transport when a body passes the cap (the SDKs wrap it)."""


def capped_httpx_client(sdk: Any, limit: int) -> Any:
    """The SDK's default httpx client (`sdk.DefaultAsyncHttpxClient`: its timeouts, pool and redirects) whose
    transport refuses a body over `limit` bytes, by Content-Length at once or by counting while reading.
    Built on the httpx the SDK itself imports (recent SDKs vendor it as `httpx2`)."""
    import importlib

    client_base = next(c for c in sdk.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    httpx: Any = importlib.import_module(client_base.__module__.partition(".")[0])

    class CappedStream(httpx.AsyncByteStream):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        async def __aiter__(self) -> Any:
            seen = 0
            async for chunk in self._inner:
                seen += len(chunk)
                if seen > limit:
                    raise ResponseTooLarge(limit)
                yield chunk

        async def aclose(self) -> None:
            await self._inner.aclose()

    class CappedTransport(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: Any) -> Any:
            resp = await super().handle_async_request(request)
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                await resp.aclose()
                raise ResponseTooLarge(limit)
            return httpx.Response(
                resp.status_code,
                headers=resp.headers,
                stream=CappedStream(resp.stream),
                extensions=resp.extensions,
            )

    # The pool size the SDKs' default transport has (a transport given to the client brings its own).
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    return sdk.DefaultAsyncHttpxClient(transport=CappedTransport(limits=limits))
