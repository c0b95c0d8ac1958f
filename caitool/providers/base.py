"""The provider contract: what a model call takes and returns, independent of any SDK.

A `ModelClient` answers two kinds of request:
- `chat(messages, params)`: a conversation, rendered by the server with the model's chat template;
- `complete(prompt, params)`: raw text continued as is (base models, and chat models when the caller has
  rendered the template itself so that an answer prefix such as "The answer is: (" can be forced).

Adapters translate every SDK failure into `caitool.errors.ProviderError` with `retryable` set, and never retry
themselves: the single retry layer lives in `caitool.retry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from caitool.errors import UsageError

Role = Literal["system", "user", "assistant"]

# The id of the record whose task is making a request: set by the runner for each record's task (child tasks
# inherit it), None outside a run. An endpoint fleet keeps one record's requests on one server by it.
current_record: ContextVar[str | None] = ContextVar("caitool_current_record", default=None)


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    # The end of the request's stable prefix (system and few-shot examples, the same in every record's
    # request): a provider with explicit prompt caching (Anthropic's cache_control) marks it there. Not part
    # of the message's value: equality, repr (gold-file hashes hash reprs), to_dict and caches ignore it.
    cache_point: bool = field(default=False, compare=False, repr=False)

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class GenerateParams:
    temperature: float = 1.0
    max_tokens: int = 512
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None
    # OpenAI's `service_tier` ("flex"); None sends none. Set by the retry layer from --tier, per attempt
    # (a flex fallback switches the rest of the run to standard); never part of the fingerprint.
    service_tier: str | None = None

    def __post_init__(self) -> None:
        # NaN or Infinity would reach request bodies and the manifest as invalid JSON (`--top-p nan`).
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"--{name.replace('_', '-')} {value}: must be a finite number")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change outputs (the seed is recorded separately)."""
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "stop": list(self.stop),
        }


# Named tuples, not frozen dataclasses: a label-pairs answer carries 20 alternatives per token, and a frozen
# dataclass costs several times more to build; at 1000+ answers a second that was ~8 % of the client's CPU.
class TopLogprob(NamedTuple):
    token: str
    logprob: float


class TokenLogprob(NamedTuple):
    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class Choice:
    text: str
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass
class Usage:
    input_tokens: int = 0  # all of the prompt's tokens, the cached ones included
    output_tokens: int = 0
    calls: int = 0
    # Of input_tokens, those read from the provider's prompt cache (OpenAI `cached_tokens`, Anthropic
    # `cache_read_input_tokens`): priced at the cached-input price where the table states one.
    cached_input_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.calls += other.calls
        self.cached_input_tokens += other.cached_input_tokens

    def to_dict(self) -> dict[str, int]:
        out = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens, "calls": self.calls}
        if (
            self.cached_input_tokens
        ):  # only when there are some: rows without a prompt cache stay as they were
            out["cached_input_tokens"] = self.cached_input_tokens
        return out


@dataclass
class Completion:
    choices: list[Choice]
    usage: Usage = field(default_factory=Usage)
    model: str = ""

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""


# What a provider that does not declare a capability is taken to have (`caitool.retry.ResilientClient` fills
# these in, so a plugin written before a capability existed keeps working).
CAPABILITY_DEFAULTS: dict[str, Any] = {
    "supports_logprobs": False,
    "supports_completions": False,
    "supports_n": True,
    "default_concurrency": 16,
    "render_chat": None,
    "supports_flex": False,
    "actor_gpus": 0,
}


class ModelClient(Protocol):
    """What every provider implements. `spec` is the `provider/model` string the user gave.

    Capabilities are declared by the provider, never guessed from the spec string:
    - `supports_logprobs`: answers can carry token log-probs (label-pairs reads P(A) from them);
    - `supports_completions`: `complete()` works (raw text, for base models and forced answer prefixes);
    - `supports_n`: one request returns `n` samples; without it the retry layer sends `n` requests;
    - `default_concurrency`: records in flight when `--concurrency` is not given (1 for an in-process model,
      where more only queues);
    - `render_chat`: the model's own chat template, `messages -> text`, when the client can apply it itself
      (so a completion can continue a rendered chat after a forced prefix: label-pairs' `chat-prefill`);
      None when only the server knows the template;
    - `supports_flex`: requests may ask for OpenAI's flex tier (`GenerateParams.service_tier = "flex"`);
    - `actor_gpus`: GPUs one copy of the client needs in-process (a `--engine ray` actor asks for them; 0:
      none, the actor takes CPUs).
    """

    spec: str
    supports_logprobs: bool
    supports_completions: bool
    supports_n: bool
    default_concurrency: int

    @property
    def render_chat(self) -> Callable[[list[Message]], str] | None: ...

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion: ...

    async def complete(self, prompt: str, params: GenerateParams) -> Completion: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """One kind of model server, as the provider table (`caitool.providers`) holds it: what `caitool providers
    list` shows, and how a `name/model` spec becomes a client. Built-ins and plugins are the same shape.

    - `key_env`: the environment variable the API key is read from (None: no key is needed);
    - `base_url_env`: the environment variable that overrides the base URL (None: no URL);
    - `base_url()`: the address a client would use now, from the environment or the default;
    - `ready()`: (usable here, why or why not), checked without importing an SDK or calling a server;
    - `create(spec, model, base_url=, api_key=, timeout=)`: the client; flags win over the environment.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def key_env(self) -> str | None: ...

    @property
    def base_url_env(self) -> str | None: ...

    def base_url(self) -> str | None: ...

    def ready(self) -> tuple[bool, str]: ...

    def create(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> ModelClient: ...
