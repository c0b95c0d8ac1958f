"""Shared helpers for HTTP providers: Retry-After parsing and status classification."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from caitool.errors import ProviderError

# Worth another attempt: request timeout, conflict, rate limit, and 5xx (529 = Anthropic overloaded).
RETRYABLE_STATUSES = {408, 409, 429}

# A 429 that means "out of money", not "too fast": retrying only pays for nothing.
QUOTA_CODES = ("insufficient_quota", "enforced_spend_limit_reached", "billing")


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


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
        return ProviderError(
            text, retryable=False, status=status, hint="check the API key (environment variable or --api-key)"
        )
    retryable = status in RETRYABLE_STATUSES or status >= 500
    return ProviderError(
        text,
        retryable=retryable,
        status=status,
        retry_after=parse_retry_after(headers),
        rate_limited=status == 429,
    )
