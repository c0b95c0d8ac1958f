"""Model specs (`provider/model`) resolved to clients, through one table of providers.

Built-in providers (`caitool.providers.builtin`):
- `openai/MODEL`: OpenAI or any OpenAI-compatible server; `OPENAI_API_KEY`, `OPENAI_BASE_URL` or flags.
- aliases for local OpenAI-compatible servers, each with its usual address and a `<NAME>_BASE_URL` override:
  `vllm/`, `sglang/`, `llamacpp/`, `ollama/`, `lmstudio/`, `tgi/`.
- `anthropic/MODEL`: the Messages API; `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` or flags.
- `local/smollm2` (the default) or `local/PATH.gguf`: the embedded llama.cpp model, in-process.

A third-party package adds a provider by declaring

    [project.entry-points."caitool.providers"]
    myprovider = "my_package.module:MyProvider"

where the target is a class (instantiated with no arguments) or an object satisfying
`caitool.providers.base.Provider` (`tests/fake_provider_plugin/` is one to copy). A bare callable
`factory(spec, model, base_url=, api_key=, timeout=) -> ModelClient`, the older contract, still works.
Loading an entry point must stay cheap: import the SDK in `create`, not at module level.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from caitool.errors import UsageError
from caitool.plugins import entry_point_targets, load_target
from caitool.providers._http import redact, url_secrets
from caitool.providers.base import ModelClient, Provider
from caitool.providers.builtin import BUILTINS, OpenAICompatible

GROUP = "caitool.providers"
DEFAULT_MODEL = "local/smollm2"
# The OpenAI-compatible built-ins by name (their key and base-URL variables, default addresses).
OPENAI_COMPATIBLE: dict[str, OpenAICompatible] = {
    p.name: p for p in BUILTINS if isinstance(p, OpenAICompatible)
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


@dataclass(frozen=True)
class FactoryProvider:
    """A plugin registered as a bare client factory (the contract before providers described themselves):
    it builds clients, but cannot say which key it reads or whether it is ready."""

    name: str
    factory: Callable[..., ModelClient]
    description: str = "plugin (a bare factory)"
    key_env: str | None = None
    base_url_env: str | None = None

    def base_url(self) -> str | None:
        return None

    def ready(self) -> tuple[bool, str]:
        return True, "a bare factory: readiness unknown"

    def create(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> ModelClient:
        return self.factory(spec, model, base_url=base_url, api_key=api_key, timeout=timeout)


@dataclass(frozen=True)
class ProviderInfo:
    """One row of `caitool providers list`."""

    name: str
    source: str  # "caitool" for built-ins, else the distribution that declares the entry point
    ready: bool
    key_env: str | None
    base_url: str | None
    detail: str
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _plugin_targets() -> dict[str, tuple[str, str]]:
    """name -> (module:attr, distribution) of the `caitool.providers` entry points. A built-in name wins."""
    return entry_point_targets(GROUP, {p.name for p in BUILTINS})


def _load_plugin(name: str, target: str) -> Provider:
    obj = load_target(target, f"provider {name!r}")
    if isinstance(obj, type) and hasattr(obj, "create"):
        try:
            obj = obj()
        except Exception as exc:  # a broken plugin must not take the CLI down with a traceback
            raise UsageError(f"provider {name!r} ({target}) failed to start: {exc}") from exc
    if isinstance(obj, Provider):
        return obj
    if callable(obj):
        return FactoryProvider(name, obj)
    raise UsageError(
        f"provider {name!r} ({target}) is neither a caitool.providers.base.Provider nor a factory"
    )


def provider_names() -> list[str]:
    """Every provider name a spec may start with: the built-ins and the installed plugins."""
    return sorted([p.name for p in BUILTINS] + list(_plugin_targets()))


def _unknown(name: str, where: str = "") -> UsageError:
    return UsageError(
        f"unknown provider {name!r}{where}",
        hint="known providers: " + ", ".join(provider_names()) + " (see `caitool providers list`)",
    )


def get_provider(name: str, *, spec: str | None = None) -> Provider:
    """The provider called `name`: a built-in, else a plugin (loaded now; a broken one is a usage error).
    `spec`, when given, is named in the error for an unknown provider."""
    for p in BUILTINS:
        if p.name == name:
            return p
    plugins = _plugin_targets()
    if name not in plugins:
        raise _unknown(name, f" in {spec!r}" if spec else "")
    return _load_plugin(name, plugins[name][0])


def get_client(
    spec: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 120.0
) -> ModelClient:
    """Build the client for `spec`. Imports the SDK it needs, and only that one."""
    name, model = split_spec(spec)
    provider = get_provider(name, spec=spec)
    return provider.create(spec, model, base_url=base_url, api_key=api_key, timeout=timeout)


def _info(name: str, provider: Provider, source: str) -> ProviderInfo:
    ok, detail = provider.ready()
    url = provider.base_url()  # from the environment, which may hold user:password@ or ?key=
    hide = url_secrets(url, None)
    shown = redact(url, hide) if url else None
    return ProviderInfo(name, source, ok, provider.key_env, shown, redact(detail, hide), provider.description)


def list_providers() -> list[ProviderInfo]:
    """Every provider, built-ins first: whether it is ready here, its key variable and base URL."""
    out = [_info(p.name, p, "caitool") for p in BUILTINS]
    for name, (target, source) in sorted(_plugin_targets().items()):
        try:
            out.append(_info(name, _load_plugin(name, target), source))
        except UsageError as exc:
            out.append(ProviderInfo(name, source, False, None, None, str(exc)))
    return out
