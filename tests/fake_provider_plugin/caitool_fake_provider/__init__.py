"""A fake model provider: `fake/MODEL` talks to an OpenAI-compatible server at $FAKE_PROVIDER_BASE_URL (in the
tests, caitool's fake server) through caitool's own OpenAI adapter, as a plugin for a hosted OpenAI-compatible
service would. Its client declares its own capabilities: no raw completions, 3 records in flight by
default."""

from __future__ import annotations

import os

from caitool.errors import UsageError
from caitool.providers.base import ModelClient
from caitool.providers.openai import OpenAIClient


class FakeClient(OpenAIClient):
    supports_completions = False
    default_concurrency = 3


class FakeProvider:
    name = "fake"
    description = "test double: an OpenAI-compatible server at FAKE_PROVIDER_BASE_URL"
    key_env = "FAKE_PROVIDER_API_KEY"
    base_url_env = "FAKE_PROVIDER_BASE_URL"

    def base_url(self) -> str | None:
        return os.environ.get(self.base_url_env)

    def ready(self) -> tuple[bool, str]:
        if self.base_url():
            return True, "base URL set"
        return False, f"set {self.base_url_env}"

    def create(
        self, spec: str, model: str, *, base_url: str | None, api_key: str | None, timeout: float
    ) -> ModelClient:
        url = base_url or self.base_url()
        if not url:
            raise UsageError(f"{spec}: no server", hint=f"set {self.base_url_env} or --base-url")
        key = api_key or os.environ.get(self.key_env)
        return FakeClient(spec, model, base_url=url, api_key=key, timeout=timeout)
