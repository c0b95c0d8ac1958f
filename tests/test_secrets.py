"""API keys never reach outputs, errors files, manifests, steps files, stdout, stderr or tracebacks.

A sentinel key goes in through each path a user has (OPENAI_API_KEY / ANTHROPIC_API_KEY, --api-key,
CAITOOL_API_KEY) and the server is told to require it, so the runs prove the key was really used; then every
byte the run left behind is searched for it. The error paths (a rejected key, a fatal error with
CAITOOL_DEBUG=1 and its traceback) are searched the same way.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, SENTINEL_KEY, cli_env, run_cli
from tests.test_faults import BY_NAME, Cmd, setup

NO_KEY_ENV = {k: v for k, v in cli_env().items() if not k.endswith("_API_KEY")}


def assert_no_key_anywhere(folder: Path, *streams: str) -> None:
    for stream in streams:
        assert SENTINEL_KEY not in stream
    assert SENTINEL_KEY[8:] not in "".join(streams)  # nor a tail of it
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SENTINEL_KEY.encode() not in data, path
            assert SENTINEL_KEY[8:].encode() not in data, path


def _run_with_key(
    cmd: Cmd, fake: FakeServer, tmp_path: Path, provider: str, via: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    src, out, _ = setup(fake, cmd, tmp_path, 2)
    args = cmd.argv(fake, src, out, *extra, anthropic=provider == "anthropic")
    env = dict(NO_KEY_ENV)
    if via == "env":
        env["OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"] = SENTINEL_KEY
    elif via == "caitool-env":
        env["CAITOOL_API_KEY"] = SENTINEL_KEY
    else:
        args += ["--api-key", SENTINEL_KEY]
    return run_cli(*args, env=env)


@pytest.mark.parametrize(
    ("command", "provider", "via"),
    [
        ("critique-revise", "anthropic", "flag"),
        ("critique-revise", "openai", "caitool-env"),
        ("label-pairs", "openai", "flag"),
        ("label-pairs", "anthropic", "env"),
    ],
    ids=lambda v: str(v),
)
def test_key_is_used_but_never_written(
    fake: FakeServer, tmp_path: Path, command: str, provider: str, via: str
) -> None:
    cmd = BY_NAME[command]
    fake.configure(require_key=SENTINEL_KEY, reply_text="(A)")  # label-pairs on Anthropic votes from text
    r = _run_with_key(cmd, fake, tmp_path, provider, via)
    assert r.returncode == 0, r.stderr  # the server accepted the key: it really went through this path
    assert fake.stats()["by_status"].get("401", 0) == 0
    assert (tmp_path / "out.jsonl.manifest.json").exists()
    assert_no_key_anywhere(tmp_path, r.stdout, r.stderr)


@pytest.mark.parametrize("command", ["critique-revise", "label-pairs"])
def test_rejected_key_errors_do_not_echo_it(fake: FakeServer, tmp_path: Path, command: str) -> None:
    cmd = BY_NAME[command]
    fake.configure(require_key="a-different-key")
    r = _run_with_key(cmd, fake, tmp_path, "openai", "flag", "--errors", str(tmp_path / "errors.jsonl"))
    assert r.returncode == 1, r.stderr  # a rejected key stops the run (caitool.retry.AuthRejected)
    assert "HTTP 401" in r.stderr and "check the API key" in r.stderr
    assert_no_key_anywhere(tmp_path, r.stdout, r.stderr)


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))


@pytest.mark.parametrize("failure", ["unwritable-output", "disk-full-mid-run"])
def test_debug_traceback_has_no_key(fake: FakeServer, tmp_path: Path, failure: str) -> None:
    cmd = BY_NAME["critique-revise"]
    fake.configure(require_key=SENTINEL_KEY)
    src, out, _ = setup(fake, cmd, tmp_path, 12)
    if failure == "unwritable-output":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out.jsonl"
    env = dict(NO_KEY_ENV, CAITOOL_DEBUG="1")
    proc = subprocess.run(
        [sys.executable, "-m", "caitool", *cmd.argv(fake, src, out, "--api-key", SENTINEL_KEY, "-c", "2")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size if failure == "disk-full-mid-run" else None,
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr  # CAITOOL_DEBUG shows it...
    assert "CaitoolError: cannot write" in proc.stderr
    assert_no_key_anywhere(tmp_path, proc.stdout, proc.stderr)  # ...without the key
