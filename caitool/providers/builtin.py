"""The built-in providers, as entries of the provider table (`caitool.providers`).

Each entry knows its key variable, its base-URL variable and default address, whether it is ready here, and
how to build its client. An entry imports its SDK only in `create`, so listing the table stays cheap.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from caitool.errors import UsageError
from caitool.providers.base import ModelClient

# The `--api-key` flag's environment variable: a key every provider that takes one accepts.
GENERIC_KEY_ENV = "CAITOOL_API_KEY"


def _env(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


@dataclass(frozen=True)
class OpenAICompatible:
    """OpenAI, or a server speaking its API at a usual local address (`<PREFIX>_BASE_URL` overrides it)."""

    name: str
    default_base_url: str | None
    env_prefix: str
    description: str

    @property
    def key_env(self) -> str:
        return f"{self.env_prefix}_API_KEY"

    @property
    def base_url_env(self) -> str:
        return f"{self.env_prefix}_BASE_URL"

    def base_url(self) -> str | None:
        return _env(self.base_url_env) or self.default_base_url

    def ready(self) -> tuple[bool, str]:
        if self.default_base_url is not None:
            return True, "no key needed: expects a server at the base URL"
        if _env(self.key_env) or _env(GENERIC_KEY_ENV) or self.base_url():
            return True, "key or base URL set"
        return False, f"set {self.key_env}, or {self.base_url_env} for a local server"

    def create(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> ModelClient:
        from caitool.providers.openai import OpenAIClient

        url = base_url or self.base_url()
        key = api_key or _env(self.key_env)
        if self.default_base_url is None and not key and not url:
            raise UsageError(
                f"{self.name}/: no API key", hint=f"set {self.key_env}, or --base-url for a local server"
            )
        return OpenAIClient(spec, model, base_url=url, api_key=key, timeout=timeout)


@dataclass(frozen=True)
class Anthropic:
    name: str = "anthropic"
    description: str = "the Anthropic Messages API (no log-probs: labels from sampled votes)"
    key_env: str = "ANTHROPIC_API_KEY"
    base_url_env: str = "ANTHROPIC_BASE_URL"

    def base_url(self) -> str | None:
        return _env(self.base_url_env)

    def _key(self) -> str | None:
        return _env(self.key_env) or _env("ANTHROPIC_AUTH_TOKEN")

    def ready(self) -> tuple[bool, str]:
        if self._key() or _env(GENERIC_KEY_ENV) or self.base_url():
            return True, "key or base URL set"
        return False, f"set {self.key_env}"

    def create(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> ModelClient:
        from caitool.providers.anthropic import AnthropicClient

        url = base_url or self.base_url()
        key = api_key or self._key()
        if not key and not url:
            raise UsageError("anthropic/: no API key", hint="set ANTHROPIC_API_KEY")
        return AnthropicClient(spec, model, base_url=url, api_key=key, timeout=timeout)


@dataclass(frozen=True)
class Local:
    name: str = "local"
    description: str = "a GGUF model run in-process by llama.cpp (local/smollm2 ships with caitool[local])"
    key_env: None = None
    base_url_env: None = None

    def base_url(self) -> str | None:
        return None

    def ready(self) -> tuple[bool, str]:
        from caitool.providers.local import INSTALL_HINT, SMOLLM2_FILE, smollm2_path

        if importlib.util.find_spec("llama_cpp") is None:
            return False, INSTALL_HINT
        try:
            smollm2_path()
        except UsageError:
            return True, f"llama.cpp installed; {SMOLLM2_FILE} is not (local/PATH.gguf works)"
        return True, "llama.cpp and local/smollm2 installed"

    def create(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> ModelClient:
        from caitool.providers.local import LocalClient

        return LocalClient(spec, model)


def _cuda_visible() -> bool:
    """A CUDA device node here, and CUDA_VISIBLE_DEVICES not hiding every one (without importing torch)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


@dataclass(frozen=True)
class VLLMEngine:
    name: str = "vllm-engine"
    description: str = "a model run in-process by vLLM on a GPU (caitool[vllm]; --engine ray: one per GPU)"
    key_env: None = None
    base_url_env: None = None

    def base_url(self) -> str | None:
        return None

    def ready(self) -> tuple[bool, str]:
        if importlib.util.find_spec("vllm") is None:
            return False, 'pip install "caitool[vllm]" in a GPU environment of its own (docs/scale.md)'
        if not _cuda_visible():
            return False, "vLLM installed, but no CUDA device is visible here (--engine ray may have one)"
        return True, "vLLM installed and a CUDA device visible"

    def create(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> ModelClient:
        from caitool.providers.vllm_engine import VLLMEngineClient

        return VLLMEngineClient(spec, model)


BUILTINS: tuple[OpenAICompatible | Anthropic | Local | VLLMEngine, ...] = (
    OpenAICompatible("openai", None, "OPENAI", "OpenAI, or any OpenAI-compatible server via --base-url"),
    OpenAICompatible("vllm", "http://localhost:8000/v1", "VLLM", "vLLM's OpenAI-compatible server"),
    OpenAICompatible("sglang", "http://localhost:30000/v1", "SGLANG", "SGLang's OpenAI-compatible server"),
    OpenAICompatible("llamacpp", "http://localhost:8080/v1", "LLAMACPP", "llama.cpp llama-server"),
    OpenAICompatible("ollama", "http://localhost:11434/v1", "OLLAMA", "Ollama (logprobs since v0.12.11)"),
    OpenAICompatible("lmstudio", "http://localhost:1234/v1", "LMSTUDIO", "LM Studio (no logprobs)"),
    OpenAICompatible("tgi", "http://localhost:8080/v1", "TGI", "Text Generation Inference"),
    Anthropic(),
    Local(),
    VLLMEngine(),
)
