"""Model specs (`provider/model`) resolved to clients.

Built-in providers:
- `openai/MODEL`: OpenAI or any OpenAI-compatible server; `OPENAI_API_KEY`, `OPENAI_BASE_URL` or flags.
- aliases for local OpenAI-compatible servers, each with its usual address and a `<NAME>_BASE_URL` override:
  `vllm/`, `sglang/`, `llamacpp/`, `ollama/`, `lmstudio/`, `tgi/`.
- `anthropic/MODEL`: the Messages API; `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` or flags.
- `local/smollm2` (the default) or `local/PATH.gguf`: the embedded llama.cpp model, in-process.

Third-party packages add providers through the `caitool.providers` entry-point group: the entry point is a
callable `factory(spec, model, base_url=..., api_key=..., timeout=...) -> ModelClient`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from caitool.errors import UsageError
from caitool.providers.base import ModelClient

DEFAULT_MODEL = "local/smollm2"


@dataclass(frozen=True)
class OpenAICompatible:
    default_base_url: str | None
    env_prefix: str
    description: str


OPENAI_COMPATIBLE: dict[str, OpenAICompatible] = {
    "openai": OpenAICompatible(None, "OPENAI", "OpenAI, or any OpenAI-compatible server via --base-url"),
    "vllm": OpenAICompatible("http://localhost:8000/v1", "VLLM", "vLLM's OpenAI-compatible server"),
    "sglang": OpenAICompatible("http://localhost:30000/v1", "SGLANG", "SGLang's OpenAI-compatible server"),
    "llamacpp": OpenAICompatible("http://localhost:8080/v1", "LLAMACPP", "llama.cpp llama-server"),
    "ollama": OpenAICompatible("http://localhost:11434/v1", "OLLAMA", "Ollama (logprobs since v0.12.11)"),
    "lmstudio": OpenAICompatible("http://localhost:1234/v1", "LMSTUDIO", "LM Studio (no logprobs)"),
    "tgi": OpenAICompatible("http://localhost:8080/v1", "TGI", "Text Generation Inference"),
}


def default_model() -> str:
    return os.environ.get("CAITOOL_MODEL") or DEFAULT_MODEL


def split_spec(spec: str) -> tuple[str, str]:
    provider, sep, model = spec.partition("/")
    if not sep or not provider or not model:
        raise UsageError(
            f"model spec {spec!r} is not provider/model",
            hint="for example local/smollm2, openai/gpt-4o-mini, anthropic/claude-sonnet-4-5, vllm/MODEL",
        )
    return provider, model


def _plugin_factories() -> dict[str, Callable[..., ModelClient]]:
    return {ep.name: ep.load() for ep in entry_points(group="caitool.providers")}


def get_client(
    spec: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0
) -> ModelClient:
    """Build the client for `spec`. Imports the SDK it needs, and only that one."""
    provider, model = split_spec(spec)
    if provider in OPENAI_COMPATIBLE:
        from caitool.providers.openai import OpenAIClient

        info = OPENAI_COMPATIBLE[provider]
        url = base_url or os.environ.get(f"{info.env_prefix}_BASE_URL") or info.default_base_url
        key = api_key or os.environ.get(f"{info.env_prefix}_API_KEY")
        if provider == "openai" and not key and not url:
            raise UsageError(
                "openai/: no API key", hint="set OPENAI_API_KEY, or --base-url for a local server"
            )
        return OpenAIClient(spec, model, base_url=url, api_key=key, timeout=timeout)
    if provider == "anthropic":
        from caitool.providers.anthropic import AnthropicClient

        url = base_url or os.environ.get("ANTHROPIC_BASE_URL")
        key = api_key or os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")
        if not key and not url:
            raise UsageError("anthropic/: no API key", hint="set ANTHROPIC_API_KEY")
        return AnthropicClient(spec, model, base_url=url, api_key=key, timeout=timeout)
    if provider == "local":
        from caitool.providers.local import LocalClient

        return LocalClient(spec, model)
    plugins = _plugin_factories()
    if provider in plugins:
        kwargs: dict[str, Any] = {"base_url": base_url, "api_key": api_key, "timeout": timeout}
        return plugins[provider](spec, model, **kwargs)
    known = sorted([*OPENAI_COMPATIBLE, "anthropic", "local", *plugins])
    raise UsageError(
        f"unknown provider {provider!r} in {spec!r}", hint="known providers: " + ", ".join(known)
    )
