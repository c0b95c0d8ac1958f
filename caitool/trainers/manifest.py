"""`DIR/caitool-manifest.json`: what produced a trained directory, for the next command and for people.

Fields: caitool version, command and canonical argv, the data file (path, sha256, rows) and any `--mix` files,
the base model (or policy) and reward model, the backend with its version, the effective arguments (flags and
`--config`), package versions, metrics, and any notes. `read_manifest` lets `rl` check that `--policy` and
`--reward` directories are what it expects.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from caitool import __version__

MANIFEST = "caitool-manifest.json"
PACKAGES = ("torch", "transformers", "trl", "datasets", "accelerate", "peft", "openrlhf")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"caitool": __version__, "python": platform.python_version()}
    for pkg in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def write_manifest(output: Path, manifest: dict[str, Any]) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    path = output / MANIFEST
    body = {"caitool_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **manifest}
    body.setdefault("versions", package_versions())
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
