"""OpenAI and every OpenAI-compatible server (vLLM, SGLang, llama.cpp server, Ollama, TGI, LM Studio).

`chat` uses /v1/chat/completions, `complete` the legacy /v1/completions (base models, and forced answer
prefixes). Log-probs and top log-probs are passed through in both shapes.

Requests go out through `caitool.providers._aiohttp` when aiohttp is installed (about a quarter of the SDK's
client CPU per request), else through the openai SDK; both send the same JSON and raise the same errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
from typing import Any

from caitool import __version__
from caitool.console import warn
from caitool.errors import ProviderError
from caitool.providers._http import (
    ResponseTooLarge,
    as_count,
    capped_httpx_client,
    check_credentials,
    max_response_bytes,
    redact,
    status_error,
    too_large,
    url_secrets,
)
from caitool.providers._openai_shape import NoText, parse_choice
from caitool.providers.base import Completion, GenerateParams, Message, Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def use_sdk_transport() -> bool:
    """The openai SDK's own request path, instead of the direct aiohttp one: when aiohttp is not installed
    (`pip install "caitool[fast]"` adds it), or with CAITOOL_HTTP=sdk (the same JSON either way)."""
    if os.environ.get("CAITOOL_HTTP", "").lower() in ("sdk", "httpx"):
        return True
    return importlib.util.find_spec("aiohttp") is None


def _headers(api_key: str | None) -> dict[str, str]:
    """What the SDK sends that a server acts on: the bearer key, and OpenAI's organization/project headers
    from the same environment variables the SDK reads."""
    headers = {"User-Agent": f"caitool/{__version__}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if org := os.environ.get("OPENAI_ORG_ID"):
        headers["OpenAI-Organization"] = org
    if project := os.environ.get("OPENAI_PROJECT_ID"):
        headers["OpenAI-Project"] = project
    return headers


class OpenAIClient:
    supports_logprobs = True
    supports_completions = True
    supports_n = True
    supports_flex = True  # `service_tier: "flex"` (OpenAI; a compatible server may ignore or refuse it)
    default_concurrency = 16
    render_chat = None  # the server applies the chat template

    def __init__(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> None:
        check_credentials(spec, base_url, api_key)
        self.spec = spec
        self.model = model
        self.timeout = timeout
        self._secrets = url_secrets(base_url, api_key)
        self._max_body = max_response_bytes()
        self._usage_warned = False
        self._batch_target = (base_url or DEFAULT_BASE_URL, api_key)  # the batch tier's own SDK client
        self._poster: Any = None
        self._client: Any = None
        if not use_sdk_transport():
            from caitool.providers._aiohttp import JSONPoster

            self._poster = JSONPoster(
                "openai", base_url or DEFAULT_BASE_URL, _headers(api_key), timeout, max_body=self._max_body
            )
            return
        import openai

        self._openai = openai
        # max_retries=0: caitool.retry owns the only retry loop (see its docstring).
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout,
            http_client=capped_httpx_client(openai, self._max_body),
        )

    def _kwargs(self, params: GenerateParams, *, chat: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.model, "temperature": params.temperature}
        kw["max_tokens"] = params.max_tokens
        if params.top_p is not None:
            kw["top_p"] = params.top_p
        if params.stop:
            kw["stop"] = list(params.stop)
        if params.n > 1:
            kw["n"] = params.n
        if params.seed is not None:
            kw["seed"] = params.seed
        if params.service_tier is not None:
            kw["service_tier"] = params.service_tier
        if params.logprobs:
            if chat:
                kw["logprobs"] = True
                if params.top_logprobs:
                    kw["top_logprobs"] = params.top_logprobs
            else:
                kw["logprobs"] = max(1, params.top_logprobs)
        return kw

    async def _sdk_post(self, path: str, body: dict[str, Any]) -> Any:
        # `client.post` (the SDK's documented way to call any endpoint) instead of `*.create()`: create()
        # first walks every message through the SDK's TypedDict transform, about 40 % of the client's CPU
        # per request with 20+ few-shot turns (benchmarks/RESULTS.md); our bodies are plain JSON already.
        # `cast_to=object` returns the decoded JSON as is, skipping the pydantic model build.
        oa = self._openai
        try:
            # httpx's timeouts limit each phase (a byte every few seconds never trips them): --timeout is
            # the whole attempt's deadline, as on the direct path.
            async with asyncio.timeout(self.timeout):
                return await self._client.post(path, body=body, cast_to=object)
        except oa.APIStatusError as exc:
            detail = getattr(exc, "body", None)
            raise status_error("openai", exc.status_code, exc.message, exc.response.headers, detail) from None
        except (oa.APITimeoutError, oa.APIConnectionError) as exc:
            if isinstance(exc.__cause__, ResponseTooLarge):
                raise too_large("openai", self._max_body) from None
            raise ProviderError(f"openai: {type(exc).__name__}: {exc}", retryable=True) from None
        except oa.APIResponseValidationError as exc:
            raise ProviderError(f"openai: invalid response: {exc}", retryable=True) from None
        except ResponseTooLarge:  # raised through the SDK as is (some versions wrap it, above)
            raise too_large("openai", self._max_body) from None
        except TimeoutError:
            raise ProviderError(
                f"openai: no complete answer within {self.timeout:g} s (--timeout)", retryable=True
            ) from None
        except (ValueError, RecursionError) as exc:  # a truncated, non-JSON or absurdly nested body
            raise ProviderError(f"openai: unreadable response: {exc}", retryable=True) from None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request; the decoded JSON when it has choices, else a retryable `ProviderError`."""
        try:
            if self._poster is not None:
                response = await self._poster.post(path, body)
            else:
                response = await self._sdk_post(path, body)
        except ProviderError as exc:
            # Messages quote URLs and server text: never the key, a base-URL password or a query secret.
            exc.args = (redact(str(exc), self._secrets),)
            raise
        if not isinstance(response, dict):
            raise ProviderError("openai: response is not a JSON object", retryable=True)
        choices = response.get("choices")
        if not choices or not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise ProviderError("openai: response has no choices", retryable=True)
        return response

    def _usage(self, response: dict[str, Any]) -> Usage:
        u = response.get("usage")
        if u is None:
            return Usage(calls=1)
        counts = (
            [as_count(u.get("prompt_tokens") or 0), as_count(u.get("completion_tokens") or 0)]
            if isinstance(u, dict)
            else [None, None]
        )
        if None in counts and not self._usage_warned:
            # The answer itself is fine and paid for: keep it, count what is readable, and say so once.
            self._usage_warned = True
            warn(f"{self.spec}: the server sent unreadable token counts ({str(u)[:80]}); counted as 0")
        details = u.get("prompt_tokens_details") if isinstance(u, dict) else None
        cached = as_count(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        inputs = counts[0] or 0
        # The share of the prompt OpenAI read from its prompt cache (automatic for prefixes >= 1024 tokens).
        return Usage(
            input_tokens=inputs,
            output_tokens=counts[1] or 0,
            calls=1,
            cached_input_tokens=min(inputs, cached or 0),
        )

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        body = {"messages": [m.to_dict() for m in messages], **self._kwargs(params, chat=True)}
        return self._completion(await self._post("/chat/completions", body), chat=True)

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        body = {"prompt": prompt, **self._kwargs(params, chat=False)}
        return self._completion(await self._post("/completions", body), chat=False)

    def _completion(self, response: dict[str, Any], *, chat: bool) -> Completion:
        kind = "chat" if chat else "completion"
        try:
            choices = [parse_choice(c, chat=chat) for c in response["choices"]]
            return Completion(
                choices=choices, usage=self._usage(response), model=str(response.get("model") or "")
            )
        except NoText as exc:
            # A filtered answer comes back filtered on a retry; a missing one may be a glitch.
            raise ProviderError(f"openai: {exc}", retryable=not exc.filtered) from None
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            raise ProviderError(
                f"openai: malformed {kind} response: {str(exc)[:200]}", retryable=True
            ) from None

    # -- the batch tier (caitool.tiers): the live path's bodies and parser, through the Batch API ----------
    batch_api = "openai"

    def batch_request(
        self, request: list[Message] | str, params: GenerateParams
    ) -> tuple[str, dict[str, Any]]:
        """(endpoint, body) of one request as a Batch API input line carries it: the live request's JSON
        (log-probs included), model and all."""
        if isinstance(request, str):
            return "/v1/completions", {"prompt": request, **self._kwargs(params, chat=False)}
        return "/v1/chat/completions", {
            "messages": [m.to_dict() for m in request],
            **self._kwargs(params, chat=True),
        }

    def parse_batch_result(self, body: Any, *, chat: bool) -> Completion:
        """A batch result's response body, read by the same code as a live answer."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not choices or not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise ProviderError("openai: batch result has no choices", retryable=True)
        return self._completion(body, chat=chat)

    def batch_account(self) -> str:
        """`openai|base_url|sha256(key)[:12]`: whose batches these are, without the key."""
        url, key = self._batch_target
        return f"openai|{url.rstrip('/')}|{hashlib.sha256((key or '').encode()).hexdigest()[:12]}"

    def batch_sdk(self) -> Any:
        """An async openai SDK client for the Files and Batches endpoints; no SDK retries."""
        import openai

        url, key = self._batch_target
        return openai.AsyncOpenAI(
            base_url=url, api_key=key or "not-needed", max_retries=0, timeout=self.timeout
        )

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    async def aclose(self) -> None:
        if self._poster is not None:
            await self._poster.aclose()
        else:
            await self._client.close()
