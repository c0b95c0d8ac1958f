"""JSON over HTTP on aiohttp: the OpenAI-compatible provider's request path when aiohttp is installed.

Why not the openai SDK here: per request the SDK builds request options, an httpx request, merged headers and
a wrapped response, about 1 ms of client CPU; a POST through aiohttp (C-accelerated HTTP parser, one shared
connection pool) costs about 0.3 ms. At C = 256 and 200 ms latency the physical limit is 1280 requests/s,
which one core reaches only under ~0.8 ms per request (benchmarks/RESULTS.md). The wire format is the JSON
body the SDK would send; failures are classified by the same rules (`status_error`), so the retry layer sees
the same `ProviderError`s on either path. `CAITOOL_HTTP=sdk` selects the SDK instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp

from caitool.errors import ProviderError
from caitool.providers._http import max_response_bytes, status_error, too_large

# Error bodies are read for their message only; a misbehaving server cannot make us buffer more.
MAX_ERROR_BODY = 64 * 1024


def _ssl_context() -> ssl.SSLContext:
    """Verify against $SSL_CERT_FILE, else certifi's bundle (what the SDKs' httpx uses), else the system's."""
    cafile = os.environ.get("SSL_CERT_FILE")
    if not cafile:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)


def _error_message(body: Any, text: str) -> str:
    """`{"error": {"message": ...}}` (OpenAI, Anthropic, vLLM), `{"error": "..."}`, else the raw text."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if body.get("message"):
            return str(body["message"])
    return text.strip()[:500] or "(empty body)"


class JSONPoster:
    """POSTs JSON bodies to `base_url + path` and returns the decoded JSON, or raises `ProviderError`.

    The session is made on first use inside the running event loop (aiohttp binds it to that loop), and made
    again on first use after `aclose()` or on another loop.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        timeout: float,
        *,
        max_body: int | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_body = max_body if max_body is not None else max_response_bytes()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        https = self.base_url.startswith("https:")
        connector = aiohttp.TCPConnector(limit=0, ssl=_ssl_context() if https else False)
        return aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            # --timeout is the whole attempt's deadline (connect, send, wait, read): a server dripping one
            # byte a second must not hold a request past it, as a per-read limit would let it.
            timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.timeout),
            # HTTP(S)_PROXY / NO_PROXY as the SDK honours them; read per request only when some are set.
            trust_env=bool(urllib.request.getproxies()),
            raise_for_status=False,
            auto_decompress=True,
        )

    def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        if self._session is None or self._loop is not loop or self._session.closed:
            # A session left open on an ended loop cannot be closed from this one; aiohttp reports it as
            # unclosed. Callers close the client (`aclose`) on the loop that used it, as the CLI does.
            self._session = self._new_session()
            self._loop = loop
        return self._session

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        session = self._session_for(asyncio.get_running_loop())
        data = json.dumps(body).encode()
        name = self.provider
        try:
            async with session.post(self.base_url + path, data=data, allow_redirects=False) as resp:
                if resp.status >= 300:
                    raw = await resp.content.read(MAX_ERROR_BODY)
                    text = raw.decode("utf-8", "replace")
                    try:
                        decoded: Any = json.loads(text)
                    except (ValueError, RecursionError):
                        decoded = None
                    message = _error_message(decoded, text)
                    raise status_error(name, resp.status, message, resp.headers, decoded)
                # The size cap costs one comparison when the server says the length (as JSON APIs do).
                length = resp.content_length
                if length is not None and length > self.max_body:
                    raise too_large(name, self.max_body)
                payload = await resp.read() if length is not None else await self._read_capped(resp)
        except ProviderError:
            raise
        except aiohttp.InvalidURL as exc:
            raise ProviderError(
                f"{name}: invalid URL {exc}", retryable=False, hint="check --base-url"
            ) from None
        except TimeoutError:  # aiohttp's ServerTimeoutError and ConnectionTimeoutError are TimeoutErrors
            raise ProviderError(
                f"{name}: no complete answer within {self.timeout:g} s (--timeout)", retryable=True
            ) from None
        except (aiohttp.ClientError, OSError) as exc:  # refused, reset, truncated body, TLS
            raise ProviderError(f"{name}: {type(exc).__name__}: {exc}", retryable=True) from None
        except ValueError as exc:  # a request aiohttp refuses to build: retrying cannot help
            raise ProviderError(f"{name}: {type(exc).__name__}: {exc}", retryable=False) from None
        try:
            return json.loads(payload)
        except (ValueError, RecursionError) as exc:  # a truncated, non-JSON or absurdly nested 200
            raise ProviderError(f"{name}: unreadable response: {str(exc)[:200]}", retryable=True) from None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """A body without Content-Length (chunked), read until the cap."""
        chunks: list[bytes] = []
        seen = 0
        async for chunk in resp.content.iter_any():
            seen += len(chunk)
            if seen > self.max_body:
                raise too_large(self.provider, self.max_body)
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
