"""Prompt templates and few-shot examples, loaded from the `prompts/` data folder (or a user's file) and
rendered strictly: `$name` placeholders (string.Template syntax, `$$` for a literal dollar) must all be
supplied. Every file is checked whole at load time against its schema (`check_sections` for templates,
`example_*` helpers for few-shot examples): a missing key, a key of the wrong type, an unknown key or an
unknown placeholder is a `ConfigError` reading `file: key: problem` (exit 2), not a KeyError mid-run.
The formats are documented in docs/prompts.md.
"""

from __future__ import annotations

import hashlib
import json
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from caitool.errors import ConfigError
from caitool.providers.base import Message
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
    unknown = set(data) - {"example"}
    if unknown:
        raise ConfigError(
            f"{source}: {', '.join(sorted(unknown))}: unknown key (a few-shot file holds [[example]] tables)",
            hint="see docs/prompts.md",
        )
    raw_examples = data.get("example", [])
    if not isinstance(raw_examples, list):
        raise ConfigError(
            f"{source}: example: expected [[example]] tables, got {type_name(raw_examples)}",
            hint="see docs/prompts.md",
        )
    examples = []
    for i, raw in enumerate(raw_examples):
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: example {i + 1}: expected an [[example]] table, got {type_name(raw)}",
                hint="see docs/prompts.md",
            )
        try:
            examples.append(parse(raw))
        except ValueError as exc:  # the example_* helpers say which key and what is wrong
            raise ConfigError(f"{source}: example {i + 1}: {exc}", hint="see docs/prompts.md") from None
        except KeyError as exc:  # a parser that indexes directly
            raise ConfigError(f"{source}: example {i + 1}: {exc.args[0]}: missing") from None
        except (TypeError, AttributeError) as exc:
            raise ConfigError(f"{source}: example {i + 1}: a value of the wrong type ({exc})") from None
    return (examples if n is None else examples[:n]), sha


# ---------------------------------------------------------------------------------------------------------
# schemas: what a template or few-shot file must hold


@dataclass(frozen=True)
class Key:
    """One key of a template table: a template string with these placeholders, or (`strings`) a list of
    plain strings such as stop sequences. `required=False` for keys the code gives a default."""

    placeholders: frozenset[str] = frozenset()
    required: bool = True
    strings: bool = False


def check_sections(source: str, data: Mapping[str, Any], schema: Mapping[str, Mapping[str, Key]]) -> None:
    """Check a template file against `schema` ({table: {key: Key}}): every table present, every required
    key present, every value of its type, no unknown tables or keys (a typo would otherwise fall back to
    nothing), no unknown placeholders."""
    hint = "a template file must define every key of the packaged one; see docs/prompts.md"
    unknown_tables = sorted(set(data) - set(schema))
    if unknown_tables:
        raise ConfigError(
            f"{source}: {unknown_tables[0]}: unknown table (known: {', '.join(schema)})", hint=hint
        )
    for name, keys in schema.items():
        table = data.get(name)
        if table is None:
            raise ConfigError(f"{source}: [{name}]: missing table", hint=hint)
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {name}: expected a table, got {type_name(table)}", hint=hint)
        unknown_keys = sorted(set(table) - set(keys))
        if unknown_keys:
            raise ConfigError(
                f"{source}: {name}.{unknown_keys[0]}: unknown key (known: {', '.join(keys)})",
                hint="see docs/prompts.md",
            )
        for key, rule in keys.items():
            where = f"{source}: {name}.{key}"
            if key not in table:
                if rule.required:
                    raise ConfigError(f"{where}: missing", hint=hint)
                continue
            value = table[key]
            if rule.strings:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where}: expected a list of strings, got {type_name(value)}")
            else:
                check_template(where, value, set(rule.placeholders))


def example_str(ex: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    """A text field of a few-shot example ("" when optional and absent); ValueError names the key."""
    if key not in ex:
        if required:
            raise ValueError(f"{key}: missing")
        return ""
    value = ex[key]
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {type_name(value)}")
    return value


def example_conversation(ex: Mapping[str, Any], key: str = "conversation") -> tuple[Message, ...]:
    """A few-shot conversation: a non-empty list of {role, content} tables with known roles."""
    value = ex.get(key)
    if value is None:
        raise ValueError(f"{key}: missing")
    if not isinstance(value, list) or not value:
        raise ValueError(
            f"{key}: expected a non-empty list of {{role, content}} tables, got {type_name(value)}"
        )
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise ValueError(f"{key}[{j}]: expected a {{role, content}} table, got {type_name(m)}")
        if m["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"{key}[{j}].role: {m['role']!r} is not system, user or assistant")
        if not isinstance(m["content"], str):
            raise ValueError(f"{key}[{j}].content: expected a string, got {type_name(m['content'])}")
        out.append(Message(m["role"], m["content"]))
    return tuple(out)


def example_keys(ex: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(ex) - known
    if unknown:
        raise ValueError(f"{', '.join(sorted(unknown))}: unknown key (known: {', '.join(sorted(known))})")


def type_name(value: Any) -> str:
    """How a TOML value's type reads in a message."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


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
        raise ConfigError(f"{where}: expected a string, got {type_name(template)}")
    try:
        names = placeholders(template)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    unknown = names - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown placeholder(s) {', '.join('$' + u for u in sorted(unknown))}",
            hint="allowed: " + ", ".join("$" + a for a in sorted(allowed)),
        )
    return template


def render(template: str, **values: str) -> str:
    return string.Template(template).substitute(values)
