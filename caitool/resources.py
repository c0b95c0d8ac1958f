"""Where the packaged data folders (`principles/`, `prompts/`) are at run time.

In the repository they are top-level folders; in a built wheel hatchling force-includes them as
`caitool/_data/<name>` (see pyproject.toml). Both layouts are looked up, the wheel's first.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"caitool data folder {name!r} not found next to {_PKG}")
