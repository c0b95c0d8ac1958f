"""Shared fixtures: a real local OpenAI/Anthropic-compatible server and a helper that runs the real CLI.

Nothing here reaches the network: the fake server listens on 127.0.0.1 and the SDKs talk to it over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from caitool.testing.fake_server import FakeServer

REPO = Path(__file__).resolve().parent.parent
SENTINEL_KEY = "sk-test-SENTINEL-0123456789abcdef"

# CI (.ci/run sets CI) draws the same Hypothesis examples every run, so whether a change lands is never
# decided by a new random draw; a developer's `make test` explores new examples each time, and a failure it
# finds prints the @reproduce_failure blob to pin as an @example.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


@pytest.fixture
def fake(server: FakeServer) -> FakeServer:
    """The session server, reset to defaults (no faults, no latency) for each test."""
    server.reset(seed=0)  # with a field given, reset replaces the whole config with the defaults
    return server


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "CAITOOL_"))}
    env.update({"OPENAI_API_KEY": SENTINEL_KEY, "ANTHROPIC_API_KEY": SENTINEL_KEY, "NO_COLOR": "1"})
    # A closed local port: a test that forgets --base-url fails here instead of calling a hosted API.
    env.update({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update(extra)
    return env


def run_cli(
    *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    data = input.decode() if isinstance(input, bytes) else input
    return subprocess.run(
        [sys.executable, "-m", "caitool", *args],
        input=data,
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        cwd=REPO,
    )


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prompts(n: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "prompt": f"red-team question number {i}?"} for i in range(n)]
