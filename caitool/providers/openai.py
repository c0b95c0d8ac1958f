"""OpenAI and every OpenAI-compatible server (vLLM, SGLang, llama.cpp server, Ollama, TGI, LM Studio).

`chat` uses /v1/chat/completions, `complete` the legacy /v1/completions (base models, and forced answer
prefixes). Log-probs and top log-probs are passed through in both shapes.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from caitool.errors import ProviderError
from caitool.providers._http import status_error
from caitool.providers.base import (
    Choice,
    Completion,
    GenerateParams,
    Message,
    TokenLogprob,
    TopLogprob,
    Usage,
)


def _http_client(openai: Any, timeout: float) -> Any:
    """The SDK's own aiohttp transport when aiohttp is installed: about 20 % less client CPU per request than
    its default httpx pool, the difference between ~82 % and ~90 % of the C / latency limit on one core
    (benchmarks/RESULTS.md). None (the SDK default) without aiohttp, or with CAITOOL_HTTP=httpx."""
    if os.environ.get("CAITOOL_HTTP", "").lower() == "httpx":
        return None
    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None or importlib.util.find_spec("aiohttp") is None:
        return None
    try:
        return factory(timeout=timeout)
    except RuntimeError:  # the SDK found no aiohttp after all
        return None


class OpenAIClient:
    supports_logprobs = True
    supports_completions = True

    def __init__(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> None:
        import openai

        self.spec = spec
        self.model = model
        self._openai = openai
        # max_retries=0: caitool.retry owns the only retry loop (see its docstring).
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout,
            http_client=_http_client(openai, timeout),
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
        if params.logprobs:
            if chat:
                kw["logprobs"] = True
                if params.top_logprobs:
                    kw["top_logprobs"] = params.top_logprobs
            else:
                kw["logprobs"] = max(1, params.top_logprobs)
        return kw

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        # `client.post` (the SDK's documented way to call any endpoint) instead of `*.create()`: create()
        # first walks every message through the SDK's TypedDict transform, about 40 % of the client's CPU
        # per request with 20+ few-shot turns (benchmarks/RESULTS.md); our bodies are plain JSON already.
        # `cast_to=object` returns the decoded JSON as is, skipping the pydantic model build (another ~12 %):
        # the few fields we read are checked below. Same auth, errors and retries-off behaviour.
        return self._client.post(path, body=body, cast_to=object)

    async def _request(self, coro: Any) -> dict[str, Any]:
        oa = self._openai
        try:
            response = await coro
        except oa.APIStatusError as exc:
            body = getattr(exc, "body", None)
            raise status_error("openai", exc.status_code, exc.message, exc.response.headers, body) from None
        except (oa.APITimeoutError, oa.APIConnectionError) as exc:
            raise ProviderError(f"openai: {type(exc).__name__}: {exc}", retryable=True) from None
        except oa.APIResponseValidationError as exc:
            raise ProviderError(f"openai: invalid response: {exc}", retryable=True) from None
        except ValueError as exc:  # a truncated or non-JSON body that the SDK could not decode
            raise ProviderError(f"openai: unreadable response: {exc}", retryable=True) from None
        if not isinstance(response, dict):
            raise ProviderError("openai: response is not a JSON object", retryable=True)
        choices = response.get("choices")
        if not choices or not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise ProviderError("openai: response has no choices", retryable=True)
        return response

    @staticmethod
    def _usage(response: dict[str, Any]) -> Usage:
        u = response.get("usage") or {}
        return Usage(
            input_tokens=int(u.get("prompt_tokens") or 0),
            output_tokens=int(u.get("completion_tokens") or 0),
            calls=1,
        )

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        body = {"messages": [m.to_dict() for m in messages], **self._kwargs(params, chat=True)}
        response = await self._request(self._post("/chat/completions", body))
        try:
            return self._chat_completion(response)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(f"openai: malformed chat response: {exc!r}", retryable=True) from None

    def _chat_completion(self, response: dict[str, Any]) -> Completion:
        choices = []
        for c in response["choices"]:
            lps = None
            content_lps = (c.get("logprobs") or {}).get("content")
            if content_lps:
                lps = tuple(
                    TokenLogprob(
                        token=str(t["token"]),
                        logprob=float(t["logprob"]),
                        top=tuple(
                            TopLogprob(str(x["token"]), float(x["logprob"]))
                            for x in (t.get("top_logprobs") or [])
                        ),
                    )
                    for t in content_lps
                )
            text = (c.get("message") or {}).get("content")
            choices.append(Choice(text=text or "", finish_reason=c.get("finish_reason"), logprobs=lps))
        return Completion(
            choices=choices, usage=self._usage(response), model=str(response.get("model") or "")
        )

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        body = {"prompt": prompt, **self._kwargs(params, chat=False)}
        response = await self._request(self._post("/completions", body))
        try:
            return self._text_completion(response)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(f"openai: malformed completion response: {exc!r}", retryable=True) from None

    def _text_completion(self, response: dict[str, Any]) -> Completion:
        choices = []
        for c in response["choices"]:
            lps = None
            raw = c.get("logprobs") or {}
            tokens = raw.get("tokens")
            if tokens:
                token_lps = raw.get("token_logprobs") or [0.0] * len(tokens)
                tops = raw.get("top_logprobs") or [{}] * len(tokens)
                lps = tuple(
                    TokenLogprob(
                        token=str(tok),
                        logprob=float(lp if lp is not None else 0.0),
                        top=tuple(TopLogprob(str(k), float(v)) for k, v in (top or {}).items()),
                    )
                    for tok, lp, top in zip(tokens, token_lps, tops, strict=False)
                )
            choices.append(
                Choice(text=c.get("text") or "", finish_reason=c.get("finish_reason"), logprobs=lps)
            )
        return Completion(
            choices=choices, usage=self._usage(response), model=str(response.get("model") or "")
        )

    async def aclose(self) -> None:
        await self._client.close()
