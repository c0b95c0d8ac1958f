"""Where the rows came from: the manifest beside each input file and, through each manifest's `input`, the
stages upstream of it (label-pairs ← sample-pairs ← the prompts file).

A stage here is the manifest as a reader of the card needs it, with nothing a reader should not see: no
argv, no server addresses (`*base_url*` settings), local paths cut to file names, every string passed
through the same redaction as the manifests themselves. Files no caitool command wrote (the prompts) are
named with their SHA-256 so a reader can check they have the same ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from caitool.errors import UsageError
from caitool.providers._http import redact

FINISHED = ("complete", "partial")  # partial: finished, some records failed (the card says how many)


def manifest_path(path: str) -> Path:
    return Path(path + ".manifest.json")


def _hidden(key: str) -> bool:
    return "base_url" in key


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        text = redact(value)
        return os.path.basename(text) if os.path.isabs(text) else text
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not _hidden(str(k))}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(path: str) -> dict[str, Any]:
    mpath = manifest_path(path)
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no manifest beside it ({mpath.name}), so the card could not say how its rows were made",
            hint="export the files caitool wrote, with the manifests written beside them",
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{mpath}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{mpath}: not a caitool manifest")
    return data


def stage(path: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The card's view of one manifest."""
    counts = manifest.get("counts") or {}
    models = counts.get("models") or {}
    return {
        "file": os.path.basename(path),
        "command": manifest.get("command"),
        "status": manifest.get("status"),
        "fingerprint": manifest.get("fingerprint"),
        "settings": _clean(manifest.get("settings") or {}),
        "constitution_source": _clean(manifest.get("constitution_source")),
        "caitool_version": (manifest.get("versions") or {}).get("caitool"),
        "counts": {k: counts[k] for k in ("done", "failed", "rejected", "duplicates") if k in counts},
        "models": {
            name: {k: m.get(k) for k in ("calls", "input_tokens", "output_tokens", "cost_usd", "retries")}
            for name, m in models.items()
            if isinstance(m, dict)
        },
    }


def _upstream_inputs(manifest: dict[str, Any], beside: Path) -> list[str]:
    given = manifest.get("input")
    names = list(given.values()) if isinstance(given, dict) else [given]
    found = []
    for name in names:
        if not isinstance(name, str) or name == "-":
            continue
        # Recorded as given on the command line: relative to where that command ran, most often here, or
        # else beside the output it produced.
        for candidate in (Path(name), beside / name):
            if candidate.is_file():
                found.append(str(candidate))
                break
    return found


def lineage(path: str) -> list[dict[str, Any]]:
    """The stages that made `path`, the nearest first, each once; checked finished."""
    manifest = _load(path)
    if manifest.get("status") not in FINISHED:
        raise UsageError(
            f"{path}: its run is {manifest.get('status', 'not finished')}, not finished",
            hint="rerun the command that wrote it to finish it (finished records are kept)",
        )
    stages = [stage(path, manifest)]
    seen = {os.path.realpath(path)}
    todo = _upstream_inputs(manifest, Path(path).parent)
    while todo:
        upstream = todo.pop(0)
        real = os.path.realpath(upstream)
        if real in seen:
            continue
        seen.add(real)
        if manifest_path(upstream).is_file():
            up = _load(upstream)
            stages.append(stage(upstream, up))
            todo.extend(_upstream_inputs(up, Path(upstream).parent))
        else:
            stages.append({"file": os.path.basename(upstream), "command": None, "sha256": _sha256(upstream)})
    return stages


def compared(stage_: dict[str, Any]) -> dict[str, Any]:
    """What must agree between the files of one config: the command and its settings (server addresses are
    already gone: one run split over two servers is one setting)."""
    return {"command": stage_.get("command"), **stage_.get("settings", {})}


def differing_keys(stages: list[dict[str, Any]]) -> list[str]:
    views = [compared(s) for s in stages]
    keys = sorted({k for v in views for k in v})
    return [k for k in keys if len({json.dumps(v.get(k), sort_keys=True) for v in views}) > 1]
