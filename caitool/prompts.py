"""Prompt templates and few-shot examples, loaded from the `prompts/` data folder (or a user's file) and
rendered strictly: `$name` placeholders (string.Template syntax, `$$` for a literal dollar) must all be
supplied, and a template that names an unknown placeholder is a `ConfigError` at load time, not a surprise
mid-run.
"""

from __future__ import annotations

import hashlib
import json
import string
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from caitool.errors import ConfigError
from caitool.resources import data_dir

T = TypeVar("T")


def resolve(name_or_path: str, suffix: str = ".toml") -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix and path.exists():
        return path
    packaged = data_dir("prompts") / (name_or_path + suffix)
    if packaged.exists():
        return packaged
    raise ConfigError(f"prompt file not found: {name_or_path}", hint=f"packaged: {', '.join(available())}")


def available() -> list[str]:
    return sorted(p.stem for p in data_dir("prompts").glob("*.toml"))


def load_toml(name_or_path: str) -> tuple[dict[str, Any], str, str]:
    """(data, source, sha256 of the canonical content)."""
    path = resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data, str(path), content_hash(data)


def load_examples(
    name_or_path: str, n: int | None, parse: Callable[[dict[str, Any]], T]
) -> tuple[list[T], str]:
    """Few-shot examples: the `[[example]]` tables of a TOML file, each parsed by `parse`, the first `n`
    kept (all when None, none when 0 without reading the file). Returns them and the file's content hash."""
    if n == 0:
        return [], ""
    data, source, sha = load_toml(name_or_path)
    examples = []
    for i, raw in enumerate(data.get("example", [])):
        try:
            examples.append(parse(raw))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: example {i + 1} is missing {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{source}: example {i + 1}: {exc}") from None
    return (examples if n is None else examples[:n]), sha


def templates_hash(template_sha: str, examples_sha: str, n_examples: int) -> str:
    """The fingerprint of a template file together with the few-shot examples used from it (resume checks
    compare it, so its formula must not change)."""
    return hashlib.sha256(f"{template_sha}:{examples_sha}:{n_examples}".encode()).hexdigest()


def content_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def placeholders(template: str) -> set[str]:
    names: set[str] = set()
    for match in string.Template.pattern.finditer(template):
        name = match.group("named") or match.group("braced")
        if name:
            names.add(name)
        elif match.group("invalid") is not None:
            raise ConfigError(f"template has a stray '$' (write $$ for a literal dollar): {template[:60]!r}")
    return names


def check_template(where: str, template: Any, allowed: set[str]) -> str:
    if not isinstance(template, str):
        raise ConfigError(f"{where}: expected a string")
    unknown = placeholders(template) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown placeholder(s) {', '.join('$' + u for u in sorted(unknown))}",
            hint="allowed: " + ", ".join("$" + a for a in sorted(allowed)),
        )
    return template


def render(template: str, **values: str) -> str:
    return string.Template(template).substitute(values)
