"""Anthropic's Messages API through the anthropic SDK. It has no log-probs and no raw completions."""

from __future__ import annotations

import asyncio
from typing import Any

from caitool.errors import ProviderError, UsageError
from caitool.providers._http import status_error
from caitool.providers.base import Choice, Completion, GenerateParams, Message, Usage


class AnthropicClient:
    supports_logprobs = False
    supports_completions = False

    def __init__(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> None:
        import anthropic

        self.spec = spec
        self.model = model
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout
        )

    async def _one(self, messages: list[Message], params: GenerateParams) -> Completion:
        an = self._anthropic
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns = [m.to_dict() for m in messages if m.role != "system"]
        kw: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "messages": turns,
        }
        # anthropic 2.x dropped temperature/top_p from the typed signature; the API still takes them.
        sampling: dict[str, float] = {"temperature": min(params.temperature, 1.0)}
        if system:
            kw["system"] = system
        if params.top_p is not None:
            sampling["top_p"] = params.top_p
        kw["extra_body"] = sampling
        if params.stop:
            kw["stop_sequences"] = list(params.stop)
        try:
            response = await self._client.messages.create(**kw)
        except an.APIStatusError as exc:
            body = getattr(exc, "body", None)
            raise status_error(
                "anthropic", exc.status_code, exc.message, exc.response.headers, body
            ) from None
        except (an.APITimeoutError, an.APIConnectionError) as exc:
            raise ProviderError(f"anthropic: {type(exc).__name__}: {exc}", retryable=True) from None
        except an.APIResponseValidationError as exc:
            raise ProviderError(f"anthropic: invalid response: {exc}", retryable=True) from None
        except ValueError as exc:
            raise ProviderError(f"anthropic: unreadable response: {exc}", retryable=True) from None
        blocks = getattr(response, "content", None)
        if blocks is None:
            raise ProviderError("anthropic: response has no content", retryable=True)
        text = "".join(getattr(b, "text", "") for b in blocks if getattr(b, "type", "") == "text")
        u = getattr(response, "usage", None)
        usage = Usage(
            input_tokens=int(getattr(u, "input_tokens", 0) or 0),
            output_tokens=int(getattr(u, "output_tokens", 0) or 0),
            calls=1,
        )
        return Completion(
            choices=[Choice(text=text, finish_reason=getattr(response, "stop_reason", None))],
            usage=usage,
            model=getattr(response, "model", ""),
        )

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        if params.n <= 1:
            return await self._one(messages, params)
        # The Messages API has no `n`: one request per sample, sent together.
        parts = await asyncio.gather(*(self._one(messages, params) for _ in range(params.n)))
        usage = Usage()
        for p in parts:
            usage.add(p.usage)
        return Completion(choices=[p.choices[0] for p in parts], usage=usage, model=parts[0].model)

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        raise UsageError(
            f"{self.spec}: the Messages API has no raw completions",
            hint="use --prompt-format chat with Anthropic models",
        )

    async def aclose(self) -> None:
        await self._client.close()
