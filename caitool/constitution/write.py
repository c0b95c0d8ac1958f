"""Writing constitutions: merging several into one, and the caitool TOML writer."""

from __future__ import annotations

from collections.abc import Sequence

from caitool.errors import ConfigError

from .model import Constitution
from .read import literal


def merge_constitutions(parts: Sequence[Constitution], *, name: str | None = None) -> Constitution:
    """Concatenate the sections of several constitutions (e.g. the paper's two JSON files) into one.

    Ids must stay unique within each section. `name` defaults to the part names joined by '+'.
    """
    if not parts:
        raise ConfigError("nothing to merge")
    critiques = [p for part in parts for p in part.critiques]
    comparisons = [p for part in parts for p in part.comparisons]
    for section, ids in (
        ("critique", [p.id for p in critiques]),
        ("comparison", [p.id for p in comparisons]),
    ):
        seen: set[str] = set()
        for pid in ids:
            if pid in seen:
                raise ConfigError(
                    f"cannot merge {', '.join(p.source for p in parts)}: {section} id {pid!r} occurs twice",
                    hint="import the files separately, or rename the ids",
                )
            seen.add(pid)
    merged_name = name if name is not None else "+".join(part.name for part in parts)
    if not merged_name.strip():
        raise ConfigError("the constitution name may not be empty")
    if len(parts) == 1:
        description = parts[0].description
    else:
        description = "Merged from " + ", ".join(part.source for part in parts) + "."
    return Constitution(
        name=merged_name.strip(),
        description=description,
        source=", ".join(part.source for part in parts),
        critiques=tuple(critiques),
        comparisons=tuple(comparisons),
        citation="; ".join(part.citation for part in parts if part.citation),
    )


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def to_toml(c: Constitution) -> str:
    """The constitution as a caitool TOML file; loading the result gives the same content and sha256."""
    lines = [
        "# A caitool constitution; the format is described in docs/principles.md.",
        f"# Written from {c.source}; content sha256 {c.sha256}.",
        "",
        f"name = {_toml_string(c.name)}",
        f"description = {_toml_string(c.description)}",
    ]
    if c.citation:
        lines.append(f"source = {_toml_string(c.citation)}")
    for p in c.critiques:
        lines += [
            "",
            "[[critique]]",
            f"id = {_toml_string(p.id)}",
            f"critique = {_toml_string(literal(p.critique))}",
            f"revision = {_toml_string(literal(p.revision))}",
        ]
    for q in c.comparisons:
        lines += [
            "",
            "[[comparison]]",
            f"id = {_toml_string(q.id)}",
            f"text = {_toml_string(literal(q.text))}",
        ]
    return "\n".join(lines) + "\n"
