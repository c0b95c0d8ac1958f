"""Reading a constitution file: parsing it with file:line problems, caitool's own layout, the shared checks.

A file is first parsed (TOML, or JSON) into Python data, then a layout reader (`from_caitool` here, the
foreign ones in `foreign.py`) turns that data into a `Draft`, collecting every problem instead of stopping at
the first; `check` then runs the checks every layout shares.
"""

from __future__ import annotations

import difflib
import json
import re
import string
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import ComparisonPrinciple, CritiquePrinciple

# Placeholder names a principle text may use (`$name` or `${name}`). None are substituted at present.
ALLOWED_PLACEHOLDERS: frozenset[str] = frozenset()

TOP_KEYS = ("name", "description", "source", "critique", "comparison")
_CRITIQUE_KEYS = ("id", "critique", "revision")
_COMPARISON_KEYS = ("id", "text")


@dataclass
class Draft:
    """What a layout reader made of a file: the principles (not yet checked) and where each came from."""

    fmt: str
    name: str = ""
    description: str = ""
    citation: str = ""
    critiques: list[CritiquePrinciple] = field(default_factory=list)
    comparisons: list[ComparisonPrinciple] = field(default_factory=list)
    # where each principle came from, for messages: "critique[3]", "'harmful3'", "constitutions[3]", ...
    critique_where: list[str] = field(default_factory=list)
    comparison_where: list[str] = field(default_factory=list)
    has_sections: bool = False


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_EOF = re.compile(r"\s*\(at end of document\)\s*$")


def read_data(path: Path, label: str) -> tuple[Any, list[str]]:
    """Parse the file into Python data; problems (with file:line:col where known) instead of exceptions."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return None, [f"{label}: is a directory, not a constitution file"]
    if not path.exists():
        return None, [f"{label}: file not found"]
    if suffix not in (".toml", ".json"):
        return None, [f"{label}: unsupported file type {path.suffix or '(none)'!r}; use .toml or .json"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [f"{label}: cannot read: {exc.strerror or exc}"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [f"{label}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    if text.startswith("\ufeff"):
        text = text[1:]
    if suffix == ".toml":
        try:
            return tomllib.loads(text), []
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = _TOML_POS.search(msg)
            if m:
                return None, [f"{label}:{m[1]}:{m[2]}: TOML syntax error: {msg[: m.start()]}"]
            m = _TOML_EOF.search(msg)
            if m:
                line = text.count("\n") + 1
                return None, [f"{label}:{line}: TOML syntax error at end of file: {msg[: m.start()]}"]
            return None, [f"{label}: TOML syntax error: {msg}"]
    try:
        return json.loads(text), []
    except json.JSONDecodeError as exc:
        return None, [f"{label}:{exc.lineno}:{exc.colno}: JSON syntax error: {exc.msg}"]
    except (ValueError, RecursionError) as exc:
        return None, [f"{label}: cannot parse JSON: {exc}"]


def type_name(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def str_field(
    entry: dict[str, Any], key: str, where: str, problems: list[str], *, required: bool
) -> str | None:
    if key not in entry:
        if required:
            problems.append(f"{where}: missing {key!r}")
        return None
    value = entry[key]
    if not isinstance(value, str):
        problems.append(f"{where}: {key!r} must be a string, not {type_name(value)}")
        return None
    return value


def unknown_keys(entry: dict[str, Any], allowed: Sequence[str], where: str, problems: list[str]) -> None:
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{where}: unknown key {key!r} ({guess}allowed: {', '.join(allowed)})")


def _table_list(data: dict[str, Any], key: str, label: str, problems: list[str]) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(
            f"{label}: {key!r} must be an array of tables ([[{key}]] in TOML, a list of objects in JSON), "
            f"not {type_name(value)}"
        )
        return []
    return value


def _entries(
    raw: list[Any], section: str, keys: tuple[str, ...], label: str, problems: list[str]
) -> Iterator[tuple[str, list[str | None]]]:
    """Each table of a `[[critique]]` or `[[comparison]]` list as (where, its `keys`' string values, None
    where missing or not a string); every problem found goes to `problems`, and a non-table is skipped."""
    for i, entry in enumerate(raw):
        where = f"{label}: {section}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table with keys {', '.join(keys)}, not {type_name(entry)}")
            continue
        if isinstance(entry.get("id"), str):
            where += f" (id {entry['id']!r})"
        unknown_keys(entry, keys, where, problems)
        yield where, [str_field(entry, key, where, problems, required=True) for key in keys]


def from_caitool(data: Any, label: str, problems: list[str]) -> Draft:
    draft = Draft(fmt="caitool")
    if not isinstance(data, dict):
        problems.append(f"{label}: the top level must be a table/object, not {type_name(data)}")
        return draft
    unknown_keys(data, TOP_KEYS, f"{label}: top level", problems)
    draft.name = str_field(data, "name", f"{label}: top level", problems, required=True) or ""
    if "name" in data and isinstance(data["name"], str) and not data["name"].strip():
        problems.append(f"{label}: top level: 'name' is empty")
    draft.description = str_field(data, "description", f"{label}: top level", problems, required=False) or ""
    draft.citation = str_field(data, "source", f"{label}: top level", problems, required=False) or ""

    raw_critiques = _table_list(data, "critique", label, problems)
    raw_comparisons = _table_list(data, "comparison", label, problems)
    draft.has_sections = bool(raw_critiques or raw_comparisons)
    critiques = _entries(raw_critiques, "critique", _CRITIQUE_KEYS, label, problems)
    for where, (pid, critique, revision) in critiques:
        if pid is not None and critique is not None and revision is not None:
            draft.critiques.append(CritiquePrinciple(pid.strip(), critique.strip(), revision.strip()))
            draft.critique_where.append(where)
    for where, (pid, text) in _entries(raw_comparisons, "comparison", _COMPARISON_KEYS, label, problems):
        if pid is not None and text is not None:
            draft.comparisons.append(ComparisonPrinciple(pid.strip(), text.strip()))
            draft.comparison_where.append(where)
    return draft


def literal(text: str) -> str:
    """A plain text (foreign layouts, loaded principles) as a string.Template text: every '$' becomes '$$'."""
    return text.replace("$", "$$")


_DOLLAR_HINT = "write '$$' for a literal '$'"


def _placeholder_problems(text: str, where: str) -> list[str]:
    problems = []
    for m in string.Template.pattern.finditer(text):
        if m.group("escaped") is not None:
            continue
        name = m.group("named") or m.group("braced")
        if name is not None:
            if name not in ALLOWED_PLACEHOLDERS:
                allowed = ", ".join(sorted(ALLOWED_PLACEHOLDERS)) or "none at present"
                problems.append(
                    f"{where}: unknown placeholder {m.group(0)!r} (allowed: {allowed}; {_DOLLAR_HINT})"
                )
        else:
            problems.append(
                f"{where}: '$' at character {m.start() + 1} starts no valid placeholder; {_DOLLAR_HINT}"
            )
    return problems


def check(draft: Draft, label: str) -> list[str]:
    """The checks shared by every layout: sections, ids, empty texts, duplicates, placeholders."""
    problems: list[str] = []
    if not draft.has_sections:
        problems.append(
            f"{label}: no principles: the 'critique' and 'comparison' sections are both missing or empty "
            "(at least one is required)"
        )
    sections: list[
        tuple[str, Sequence[CritiquePrinciple | ComparisonPrinciple], list[str], tuple[str, ...]]
    ] = [
        ("critique", draft.critiques, draft.critique_where, ("critique", "revision")),
        ("comparison", draft.comparisons, draft.comparison_where, ("text",)),
    ]
    for section, items, wheres, text_keys in sections:
        first_seen: dict[str, str] = {}
        for item, where in zip(items, wheres, strict=True):
            if not item.id:
                problems.append(f"{where}: 'id' is empty")
            elif any(ch.isspace() for ch in item.id):
                problems.append(f"{where}: 'id' {item.id!r} contains whitespace")
            elif item.id in first_seen:
                problems.append(
                    f"{where}: duplicate {section} id {item.id!r} (first used at {first_seen[item.id]})"
                )
            else:
                first_seen[item.id] = where.removeprefix(f"{label}: ").split(" (id ")[0]
            for key in text_keys:
                text = getattr(item, key)
                if not text:
                    problems.append(f"{where}: {key!r} is empty")
                else:
                    problems.extend(_placeholder_problems(text, f"{where}: {key!r}"))
    return problems
