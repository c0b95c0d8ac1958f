"""Anthropic's Messages API through the anthropic SDK. It has no log-probs, no raw completions and no `n`:
the retry layer sends one request per sample (`supports_n = False`), each budgeted and counted."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from caitool.console import warn
from caitool.errors import ProviderError, UsageError
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
from caitool.providers.base import Choice, Completion, GenerateParams, Message, Usage


class AnthropicClient:
    supports_logprobs = False
    supports_completions = False
    supports_n = False
    default_concurrency = 16
    render_chat = None

    def __init__(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> None:
        import anthropic

        check_credentials(spec, base_url, api_key)
        self.spec = spec
        self.model = model
        self.timeout = timeout
        self._secrets = url_secrets(base_url, api_key)
        self._max_body = max_response_bytes()
        self._usage_warned = False
        self._batch_target = (base_url or "https://api.anthropic.com", api_key)  # the batch tier's SDK client
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout,
            http_client=capped_httpx_client(anthropic, self._max_body),
        )

    async def _one(self, messages: list[Message], params: GenerateParams) -> Completion:
        try:
            return await self._request(messages, params)
        except ProviderError as exc:
            # Messages quote URLs and server text: never the key, a base-URL password or a query secret.
            exc.args = (redact(str(exc), self._secrets),)
            raise

    def _create_kwargs(self, messages: list[Message], params: GenerateParams) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        # The stable prefix (few-shot examples) ends at a `cache_point`: Anthropic caches it when marked.
        turns = [_cached_turn(m) if m.cache_point else m.to_dict() for m in messages if m.role != "system"]
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
        return kw

    async def _request(self, messages: list[Message], params: GenerateParams) -> Completion:
        an = self._anthropic
        kw = self._create_kwargs(messages, params)
        try:
            # --timeout is the whole attempt's deadline (httpx's own timeouts are per phase).
            async with asyncio.timeout(self.timeout):
                response = await self._client.messages.create(**kw)
        except an.APIStatusError as exc:
            body = getattr(exc, "body", None)
            raise status_error(
                "anthropic", exc.status_code, exc.message, exc.response.headers, body
            ) from None
        except (an.APITimeoutError, an.APIConnectionError) as exc:
            if isinstance(exc.__cause__, ResponseTooLarge):
                raise too_large("anthropic", self._max_body) from None
            raise ProviderError(f"anthropic: {type(exc).__name__}: {exc}", retryable=True) from None
        except an.APIResponseValidationError as exc:
            raise ProviderError(f"anthropic: invalid response: {exc}", retryable=True) from None
        except ResponseTooLarge:  # raised through the SDK as is (some versions wrap it, above)
            raise too_large("anthropic", self._max_body) from None
        except TimeoutError:
            raise ProviderError(
                f"anthropic: no complete answer within {self.timeout:g} s (--timeout)", retryable=True
            ) from None
        except (ValueError, RecursionError) as exc:
            raise ProviderError(f"anthropic: unreadable response: {str(exc)[:200]}", retryable=True) from None
        try:
            return self._completion(response)
        except ProviderError:
            raise
        except (TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            raise ProviderError(f"anthropic: malformed response: {str(exc)[:200]}", retryable=True) from None

    def _completion(self, response: Any) -> Completion:
        blocks = getattr(response, "content", None)
        stop_reason = getattr(response, "stop_reason", None)
        if blocks is None:
            raise ProviderError("anthropic: response has no content", retryable=True)
        if not isinstance(blocks, list):
            raise ValueError(f"content of type {type(blocks).__name__} is not a list of blocks")
        texts = [_block_text(b) for b in blocks if _block_type(b) == "text"]
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("a text block's text is not a string")
        if not texts and stop_reason == "refusal":
            raise ProviderError("anthropic: the model refused (stop_reason refusal)", retryable=False)
        u = getattr(response, "usage", None)
        counts = [as_count(getattr(u, "input_tokens", 0) or 0), as_count(getattr(u, "output_tokens", 0) or 0)]
        if None in counts and not self._usage_warned:
            self._usage_warned = True
            warn(f"{self.spec}: the server sent unreadable token counts; counted as 0")
        # Anthropic's input_tokens leaves out the prompt-cache reads and writes: caitool's counts all of them.
        read = as_count(getattr(u, "cache_read_input_tokens", 0) or 0) or 0
        written = as_count(getattr(u, "cache_creation_input_tokens", 0) or 0) or 0
        usage = Usage((counts[0] or 0) + read + written, counts[1] or 0, 1, cached_input_tokens=read)
        return Completion(
            choices=[Choice(text="".join(texts), finish_reason=_str_or_none(stop_reason))],
            usage=usage,
            model=str(getattr(response, "model", "") or ""),
        )

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        if params.n <= 1:
            return await self._one(messages, params)
        # Used directly (not through caitool.retry, which fans out itself): one request per sample.
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

    # -- the batch tier (caitool.tiers): the live path's bodies and parser, sent as Message Batches ----------
    batch_api = "anthropic"

    def batch_request(
        self, request: list[Message] | str, params: GenerateParams
    ) -> tuple[str, dict[str, Any]]:
        """(endpoint, params) of one request as a Message Batch carries it: the live request's body."""
        if isinstance(request, str):
            raise UsageError(
                f"{self.spec}: the Messages API has no raw completions",
                hint="use --prompt-format chat with Anthropic models",
            )
        kw = self._create_kwargs(request, params)
        return "/v1/messages", {**{k: v for k, v in kw.items() if k != "extra_body"}, **kw["extra_body"]}

    def parse_batch_result(self, body: Any, *, chat: bool) -> Completion:
        """A succeeded batch result's message, read by the same code as a live answer."""
        try:
            return self._completion(self._anthropic.types.Message.model_validate(body))
        except ProviderError:
            raise
        except (TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            raise ProviderError(
                f"anthropic: malformed batch result: {str(exc)[:200]}", retryable=True
            ) from None

    def batch_account(self) -> str:
        """`anthropic|base_url|sha256(key)[:12]`: whose batches these are, without the key."""
        url, key = self._batch_target
        return f"anthropic|{url.rstrip('/')}|{hashlib.sha256((key or '').encode()).hexdigest()[:12]}"

    def batch_sdk(self) -> Any:
        """The async anthropic SDK client (its `messages.batches`), no SDK retries."""
        url, key = self._batch_target
        return self._anthropic.AsyncAnthropic(
            base_url=url, api_key=key or "not-needed", max_retries=0, timeout=self.timeout
        )

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    async def aclose(self) -> None:
        await self._client.close()


def _block_type(block: Any) -> Any:
    return block.get("type") if isinstance(block, dict) else getattr(block, "type", None)


def _block_text(block: Any) -> Any:
    return block.get("text") if isinstance(block, dict) else getattr(block, "text", None)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _cached_turn(m: Message) -> dict[str, Any]:
    """A turn that ends the stable prefix, with the `cache_control` breakpoint Anthropic caches up to."""
    block = {"type": "text", "text": m.content, "cache_control": {"type": "ephemeral"}}
    return {"role": m.role, "content": [block]}
