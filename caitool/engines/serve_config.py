"""A Ray Serve LLM config: N vLLM replicas of one model behind one OpenAI-compatible URL
(`caitool serve-config`).

It only writes the file. Ray is not imported: the machine that writes the config needs neither Ray nor
vLLM; the cluster that runs it (`serve run FILE` or `serve deploy FILE`) needs `ray[llm]`, which brings vLLM.

The shape is Ray Serve's multi-application config (`ray.serve.schema.ServeDeploySchema`) with one
application whose builder is `ray.serve.llm:build_openai_app`; its `args` are an `LLMServingArgs` holding one
`LLMConfig` (ray 2.58: `ray/serve/llm/__init__.py`, `ray/llm/_internal/serve/core/configs/llm_config.py`).
What caitool needs from the servers is switched on: top-20 log-probs, prefix caching, a fixed replica count,
and by default Ray's prefix-aware router, so that the requests of one critique chain find the replica that
already holds its prefix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from caitool.errors import UsageError

BUILDER = "ray.serve.llm:build_openai_app"
PREFIX_ROUTER = "ray.serve.llm.request_router:PrefixCacheAffinityRouter"
APP_NAME = "caitool-llm"
# label-pairs and eval-labeler ask for the top 20 (caitool/tasks/label_pairs.py); vLLM refuses more than
# `max_logprobs` per token, and its default is lower in some versions.
MAX_LOGPROBS = 20


@dataclass(frozen=True)
class ServeSpec:
    model: str
    """Where the weights come from (`model_source`): a Hugging Face id, or a path on every node."""
    model_id: str | None = None
    """The name clients ask for (`-m vllm/MODEL_ID`); the model itself when not given."""
    replicas: int = 1
    gpus_per_replica: int = 1
    max_model_len: int | None = None
    accelerator_type: str | None = None
    route_prefix: str = "/"
    port: int = 8000
    prefix_router: bool = True

    @property
    def served_id(self) -> str:
        return self.model_id or self.model


def check(spec: ServeSpec) -> None:
    """Refuse what Ray would refuse only once the cluster reads the file (the route prefix rules of
    `ray.serve.schema._route_prefix_format`), and what makes no fleet."""
    if not spec.model.strip():
        raise UsageError("serve-config: MODEL is empty")
    if spec.model_id is not None and not spec.model_id.strip():
        raise UsageError("serve-config: --name is empty")
    prefix = spec.route_prefix
    if (
        not prefix.startswith("/")
        or (len(prefix) > 1 and prefix.endswith("/"))
        or "{" in prefix
        or "}" in prefix
    ):
        raise UsageError(
            f"serve-config: --route-prefix {prefix!r}: it must start with '/', not end with '/' "
            "(unless it is just '/'), and hold no '{' or '}'"
        )
    for name, value in (("--replicas", spec.replicas), ("--gpus-per-replica", spec.gpus_per_replica)):
        if value < 1:
            raise UsageError(f"serve-config: {name} must be at least 1, got {value}")


def serve_config(spec: ServeSpec) -> dict[str, Any]:
    """The Serve config as a plain dict (what `ServeDeploySchema` parses)."""
    check(spec)
    engine_kwargs: dict[str, Any] = {
        "max_logprobs": MAX_LOGPROBS,
        # critique chains and label questions share long prefixes (few-shot examples, the conversation so far)
        "enable_prefix_caching": True,
        # Ray Serve LLM places one GPU bundle per tensor-parallel worker
        "tensor_parallel_size": spec.gpus_per_replica,
    }
    if spec.max_model_len is not None:
        engine_kwargs["max_model_len"] = spec.max_model_len
    deployment: dict[str, Any] = {
        # min = max: a fixed fleet. caitool's own concurrency keeps it busy, and a replica started mid-run
        # would begin with a cold prefix cache.
        "autoscaling_config": {"min_replicas": spec.replicas, "max_replicas": spec.replicas},
    }
    if spec.prefix_router:
        deployment["request_router_config"] = {"request_router_class": PREFIX_ROUTER}
    llm_config: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.served_id, "model_source": spec.model},
        "engine_kwargs": engine_kwargs,
        "deployment_config": deployment,
    }
    if spec.accelerator_type:
        llm_config["accelerator_type"] = spec.accelerator_type
    return {
        # Serve's default host has changed across versions; the fleet must be reachable from caitool's host.
        "http_options": {"host": "0.0.0.0", "port": spec.port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": spec.route_prefix,
                "import_path": BUILDER,
                "args": {"llm_configs": [llm_config]},
            }
        ],
    }


def base_url(spec: ServeSpec, host: str = "HOST") -> str:
    """The URL to give caitool's `--base-url`: build_openai_app serves the OpenAI routes under `/v1`."""
    prefix = "" if spec.route_prefix == "/" else spec.route_prefix
    return f"http://{host}:{spec.port}{prefix}/v1"


def render(config: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(config, indent=2) + "\n"
    return to_yaml(config)


# A string that YAML reads back as the same string without quotes: no leading digit, sign or indicator, and
# none of YAML 1.1's booleans and nulls (PyYAML and Ray read 1.1).
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@+-]*")
_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML11_WORDS:
        return text
    return '"' + "".join(_escape(char) for char in text) + '"'


def _escape(char: str) -> str:
    """One character inside a YAML double-quoted scalar: printable ASCII as is, the rest as YAML's own
    escapes (readers refuse some raw non-ASCII characters, and JSON's surrogate pairs do not survive YAML)."""
    if char in '"\\':
        return "\\" + char
    if " " <= char <= "~":
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# The longest key YAML reads in the plain `key: value` form (a simple key: 1024 characters as written).
MAX_SIMPLE_KEY = 1024


def to_yaml(value: dict[str, Any]) -> str:
    """Block-style YAML of nested dicts, lists and scalars: enough for a Serve config, without PyYAML (not a
    dependency of caitool's core)."""
    lines: list[str] = []
    _emit(value, 0, lines)
    return "\n".join(lines) + "\n"


def _inline(value: Any) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"  # only empty ones are written inline
    return _scalar(value)


def _emit(value: Any, indent: int, lines: list[str], first_prefix: str | None = None) -> None:
    """Append `value` at `indent`; a list item's first line starts with `first_prefix` ("- ") instead."""
    pad = " " * indent
    head = first_prefix if first_prefix is not None else pad
    if isinstance(value, dict):
        for key, item in value.items():
            nested = isinstance(item, dict | list) and bool(item)
            text = _scalar(key)
            if len(text) > MAX_SIMPLE_KEY:  # YAML reads a longer key only in its explicit "? key" form
                lines.append(f"{head}? {text}")
                lines.append(f"{pad}:" if nested else f"{pad}: {_inline(item)}")
            else:
                lines.append(f"{head}{text}:" if nested else f"{head}{text}: {_inline(item)}")
            if nested:
                _emit(item, indent + 2, lines)
            head = pad
    else:
        for item in value:
            if isinstance(item, dict) and item:
                _emit(item, indent + 2, lines, first_prefix=f"{pad}- ")
            elif isinstance(item, list) and item:
                raise ValueError("to_yaml: a list directly inside a list is not supported")
            else:
                lines.append(f"{pad}- {_inline(item)}")


def write(text: str, path: str, *, overwrite: bool) -> None:
    """Write the config whole (a temporary file renamed over it), refusing to replace one that exists, which
    may hold the user's own edits, unless `overwrite`."""
    import os
    from pathlib import Path

    target = Path(path)
    if target.exists() and not overwrite:
        raise UsageError(f"serve-config: {path} exists; pass --overwrite to replace it")
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
