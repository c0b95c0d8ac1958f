"""The command line: `python -m caitool.testing.fake_server --port 0 --p429 0.05 ...` (every config field
is a flag); prints `listening on URL` first and serves until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from .config import P_FAULTS, FakeConfig
from .server import serve

_JSON_FIELDS = (
    "models",
    "reply_script",
    "answer_logprobs",
    "fault_endpoints",
    "fail_keys_containing",
    "canned_headers",
    "batch_expire",
    "batch_fail",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m caitool.testing.fake_server",
        description="Fake OpenAI/Anthropic API server with deterministic fault injection (loopback only).",
        epilog="Every config field is a flag (underscores as dashes). JSON-valued fields take JSON text; "
        "models and fault_endpoints also take a comma-separated list.",
    )
    p.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default), localhost or ::1")
    p.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    p.add_argument("--config", default=None, help="JSON object of config fields, or the path of a JSON file")
    defaults = FakeConfig()
    for f in dataclasses.fields(FakeConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action="store_true", default=None, help=f"(default: {default})")
        else:
            p.add_argument(
                flag, dest=f.name, default=None, metavar=f.name.upper(), help=f"(default: {default!r})"
            )
    return p


def _flag_value(name: str, text: str) -> Any:
    if name in _JSON_FIELDS:
        stripped = text.strip()
        if stripped[:1] in ("[", "{", '"') or stripped == "null":
            return json.loads(stripped)
        if name in ("models", "fault_endpoints"):
            return [x.strip() for x in text.split(",") if x.strip()]
        raise ValueError(f"--{name.replace('_', '-')} takes JSON text")
    if name in P_FAULTS or name in (
        "retry_after",
        "hang_s",
        "rpm",
        "batch_delay_s",
        "p_batch_expire",
        "p_flex_unavailable",
    ):
        return float(text)
    if name in ("seed", "fail_first", "fail_status", "canned_status"):
        return int(text)
    return text  # latency_ms, reply_text, require_key, fault_match, misbehave, canned_body


def config_from_args(argv: Sequence[str] | None = None) -> tuple[FakeConfig, str, int]:
    args = _parser().parse_args(argv)
    updates: dict[str, Any] = {}
    if args.config:
        text = args.config
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError("--config must be a JSON object")
        updates.update(loaded)
    for name in FakeConfig.field_names():
        value = getattr(args, name)
        if value is not None:
            updates[name] = value if isinstance(value, bool) else _flag_value(name, value)
    return FakeConfig.build(updates), args.host, args.port


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, host, port = config_from_args(argv)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"fake_server: {exc}\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, host, port))
    return 0
