"""Constitutions: the principles that steer critique-revise and label-pairs.

A constitution has two sections, either of which may be absent (not both):

- `critique`: critique/revision pairs (paper Sec. 3). critique-revise samples one pair per revision round.
- `comparison`: multiple-choice principles (paper Sec. 4). label-pairs samples one principle per comparison.

Both are sampled uniformly *with replacement*, as in the paper (its SL samples draw the same key twice for one
prompt). The packaged default, `anthropic-cai-2022`, holds the paper's 16 + 16 principles verbatim.

Files are TOML (the native format) or JSON with the same structure. Two foreign JSON layouts are recognised
and converted on load: the paper repository's `CritiqueRevisionInstructions.json` /
`RLMadisonInstructions.json` and the Hugging Face CAI recipe's
`{"constitutions": [...], "system_chat": [...]}`. See docs/principles.md.

Principle texts in a file are `string.Template` strings: `$$` is a literal dollar sign and `$name` / `${name}`
is a placeholder; only names in `ALLOWED_PLACEHOLDERS` may appear (none at present). A loaded principle holds
the final text (`$$` already turned into `$`), ready to be substituted into a prompt template.

`Constitution.sha256` hashes a canonical JSON dump of the name and both principle lists (in order), not the
file bytes, so the same content written as TOML or JSON, with other comments or key order, hashes alike.

Standard library only: this module is imported by every command and must stay light.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import random
import re
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from caitool.errors import ConfigError

DEFAULT_CONSTITUTION = "anthropic-cai-2022"

_T = TypeVar("_T")

# Placeholder names a principle text may use (`$name` or `${name}`). None are substituted at present.
ALLOWED_PLACEHOLDERS: frozenset[str] = frozenset()

_TOP_KEYS = ("name", "description", "source", "critique", "comparison")
_CRITIQUE_KEYS = ("id", "critique", "revision")
_COMPARISON_KEYS = ("id", "text")

# Names of the foreign layouts, as shown in descriptions and messages.
_FORMAT_LABELS = {
    "caitool": "caitool constitution",
    "paper-critique": "the paper repository's critique/revision instruction layout",
    "paper-comparison": "the paper repository's comparison instruction layout",
    "hf-recipe": "the Hugging Face CAI recipe layout",
}


@dataclass(frozen=True)
class CritiquePrinciple:
    id: str
    critique: str
    revision: str


@dataclass(frozen=True)
class ComparisonPrinciple:
    id: str
    text: str


def _content_hash(
    name: str, critiques: Sequence[CritiquePrinciple], comparisons: Sequence[ComparisonPrinciple]
) -> str:
    doc = {
        "name": name,
        "critique": [{"id": p.id, "critique": p.critique, "revision": p.revision} for p in critiques],
        "comparison": [{"id": p.id, "text": p.text} for p in comparisons],
    }
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Constitution:
    """A loaded, validated constitution.

    `source` is where it came from: the path as given, or `builtin:<name>`. `citation` is the file's own
    `source` key (free text naming the origin of the principles). `sha256` is always computed from the
    content; a value passed in is replaced, so `dataclasses.replace(c, name=...)` yields a consistent hash.
    """

    name: str
    description: str
    source: str
    critiques: tuple[CritiquePrinciple, ...]
    comparisons: tuple[ComparisonPrinciple, ...]
    sha256: str = ""
    citation: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "critiques", tuple(self.critiques))
        object.__setattr__(self, "comparisons", tuple(self.comparisons))
        object.__setattr__(self, "sha256", _content_hash(self.name, self.critiques, self.comparisons))

    def critique(self, id: str) -> CritiquePrinciple:
        for p in self.critiques:
            if p.id == id:
                return p
        raise ConfigError(
            f"constitution {self.name!r} has no critique/revision pair {id!r}",
            hint=_id_hint("critique", [p.id for p in self.critiques]),
        )

    def comparison(self, id: str) -> ComparisonPrinciple:
        for p in self.comparisons:
            if p.id == id:
                return p
        raise ConfigError(
            f"constitution {self.name!r} has no comparison principle {id!r}",
            hint=_id_hint("comparison", [p.id for p in self.comparisons]),
        )

    def sample_critiques(self, rng: random.Random, k: int) -> list[CritiquePrinciple]:
        """k pairs drawn uniformly with replacement (the paper's SL sampling); reproducible when seeded."""
        if not self.critiques:
            raise ConfigError(
                f"constitution {self.name!r} ({self.source}) has no critique/revision pairs",
                hint="critique-revise needs a constitution with a [[critique]] section",
            )
        return _sample(self.critiques, rng, k)

    def sample_comparisons(self, rng: random.Random, k: int) -> list[ComparisonPrinciple]:
        """k principles drawn uniformly with replacement (one per comparison label, as in the paper)."""
        if not self.comparisons:
            raise ConfigError(
                f"constitution {self.name!r} ({self.source}) has no comparison principles",
                hint="label-pairs needs a constitution with a [[comparison]] section",
            )
        return _sample(self.comparisons, rng, k)


def _sample(items: tuple[_T, ...], rng: random.Random, k: int) -> list[_T]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    return rng.choices(items, k=k)


def _id_hint(section: str, ids: list[str]) -> str:
    if not ids:
        return f"this constitution has no {section} section"
    shown = ", ".join(ids[:20]) + (", …" if len(ids) > 20 else "")
    return f"{section} ids: {shown}"


# ------------------------------------------------------------------------------------------------------------
# Reading and validating


@dataclass
class _Draft:
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


def _read_data(path: Path, label: str) -> tuple[Any, list[str]]:
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


def _detect(data: Any) -> str:
    """The layout of a parsed JSON document: caitool, paper-critique, paper-comparison, hf-recipe, unknown."""
    if isinstance(data, list):
        return "paper-comparison"
    if not isinstance(data, dict):
        return "unknown"
    if "constitutions" in data:
        return "hf-recipe"
    if not any(k in _TOP_KEYS for k in data) and any(
        isinstance(v, dict) and ("prompt" in v or "edit_request" in v) for v in data.values()
    ):
        return "paper-critique"
    return "caitool"


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _str_field(
    entry: dict[str, Any], key: str, where: str, problems: list[str], *, required: bool
) -> str | None:
    if key not in entry:
        if required:
            problems.append(f"{where}: missing {key!r}")
        return None
    value = entry[key]
    if not isinstance(value, str):
        problems.append(f"{where}: {key!r} must be a string, not {_type_name(value)}")
        return None
    return value


def _unknown_keys(entry: dict[str, Any], allowed: Sequence[str], where: str, problems: list[str]) -> None:
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
            f"not {_type_name(value)}"
        )
        return []
    return value


def _from_caitool(data: Any, label: str, problems: list[str]) -> _Draft:
    draft = _Draft(fmt="caitool")
    if not isinstance(data, dict):
        problems.append(f"{label}: the top level must be a table/object, not {_type_name(data)}")
        return draft
    _unknown_keys(data, _TOP_KEYS, f"{label}: top level", problems)
    draft.name = _str_field(data, "name", f"{label}: top level", problems, required=True) or ""
    if "name" in data and isinstance(data["name"], str) and not data["name"].strip():
        problems.append(f"{label}: top level: 'name' is empty")
    draft.description = _str_field(data, "description", f"{label}: top level", problems, required=False) or ""
    draft.citation = _str_field(data, "source", f"{label}: top level", problems, required=False) or ""

    raw_critiques = _table_list(data, "critique", label, problems)
    raw_comparisons = _table_list(data, "comparison", label, problems)
    draft.has_sections = bool(raw_critiques or raw_comparisons)
    for i, entry in enumerate(raw_critiques):
        where = f"{label}: critique[{i}]"
        if not isinstance(entry, dict):
            problems.append(
                f"{where}: must be a table with keys {', '.join(_CRITIQUE_KEYS)}, not {_type_name(entry)}"
            )
            continue
        if isinstance(entry.get("id"), str):
            where += f" (id {entry['id']!r})"
        _unknown_keys(entry, _CRITIQUE_KEYS, where, problems)
        values = [_str_field(entry, key, where, problems, required=True) for key in _CRITIQUE_KEYS]
        pid, critique, revision = values
        if pid is not None and critique is not None and revision is not None:
            draft.critiques.append(CritiquePrinciple(pid.strip(), critique.strip(), revision.strip()))
            draft.critique_where.append(where)
    for i, entry in enumerate(raw_comparisons):
        where = f"{label}: comparison[{i}]"
        if not isinstance(entry, dict):
            problems.append(
                f"{where}: must be a table with keys {', '.join(_COMPARISON_KEYS)}, not {_type_name(entry)}"
            )
            continue
        if isinstance(entry.get("id"), str):
            where += f" (id {entry['id']!r})"
        _unknown_keys(entry, _COMPARISON_KEYS, where, problems)
        pid = _str_field(entry, "id", where, problems, required=True)
        text = _str_field(entry, "text", where, problems, required=True)
        if pid is not None and text is not None:
            draft.comparisons.append(ComparisonPrinciple(pid.strip(), text.strip()))
            draft.comparison_where.append(where)
    return draft


def _strip_frame(text: str, prefixes: Sequence[str], suffixes: Sequence[str]) -> str:
    """'\\n\\nCritiqueRequest: <text>\\n\\nCritique:' -> '<text>'; text without that framing is kept."""
    t = text.strip()
    for prefix in prefixes:
        if t.startswith(prefix):
            t = t[len(prefix) :].strip()
            break
    for suffix in suffixes:
        if t.endswith(suffix):
            t = t[: -len(suffix)].strip()
            break
    return t


def _literal(text: str) -> str:
    """A plain text (foreign layouts, loaded principles) as a string.Template text: every '$' becomes '$$'."""
    return text.replace("$", "$$")


def _from_paper_critique(data: dict[str, Any], label: str, problems: list[str]) -> _Draft:
    draft = _Draft(fmt="paper-critique", has_sections=bool(data))
    for key, value in data.items():
        where = f"{label}: {key!r}"
        if not isinstance(value, dict):
            problems.append(
                f"{where}: must be an object with 'prompt' and 'edit_request', not {_type_name(value)}"
            )
            continue
        _unknown_keys(value, ("prompt", "edit_request"), where, problems)
        prompt = value.get("prompt")
        if "prompt" not in value:
            problems.append(f"{where}: missing 'prompt'")
        elif isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                problems.append(f"{where}: 'prompt' must be a list of exactly one string")
                prompt = None
            else:
                prompt = prompt[0]
        elif not isinstance(prompt, str):
            problems.append(f"{where}: 'prompt' must be a list of one string, not {_type_name(prompt)}")
            prompt = None
        edit = _str_field(value, "edit_request", where, problems, required=True)
        if isinstance(prompt, str) and edit is not None:
            critique = _strip_frame(prompt, ("CritiqueRequest:", "Critique Request:"), ("Critique:",))
            revision = _strip_frame(edit, ("RevisionRequest:", "Revision Request:"), ("Revision:",))
            draft.critiques.append(CritiquePrinciple(key.strip(), _literal(critique), _literal(revision)))
            draft.critique_where.append(where)
    return draft


def _from_paper_comparison(data: list[Any], label: str, problems: list[str]) -> _Draft:
    draft = _Draft(fmt="paper-comparison", has_sections=bool(data))
    for i, value in enumerate(data):
        where = f"{label}: [{i}]"
        if not isinstance(value, str):
            problems.append(f"{where}: must be a string, not {_type_name(value)}")
            continue
        text = _strip_frame(value, (), ("Options:",))
        draft.comparisons.append(ComparisonPrinciple(f"compare{i + 1}", _literal(text)))
        draft.comparison_where.append(where)
    return draft


def _from_hf_recipe(data: dict[str, Any], label: str, problems: list[str]) -> _Draft:
    draft = _Draft(fmt="hf-recipe")
    # system_chat holds few-shot dialogues, not principles: accepted and left out (caitool's are in prompts/).
    _unknown_keys(data, ("constitutions", "system_chat"), f"{label}: top level", problems)
    entries = data.get("constitutions")
    if not isinstance(entries, list):
        problems.append(f"{label}: 'constitutions' must be a list of objects, not {_type_name(entries)}")
        return draft
    draft.has_sections = bool(entries)
    for i, entry in enumerate(entries):
        where = f"{label}: constitutions[{i}]"
        if not isinstance(entry, dict):
            problems.append(
                f"{where}: must be an object with 'critic' and 'revision', not {_type_name(entry)}"
            )
            continue
        _unknown_keys(entry, ("critic", "revision"), where, problems)
        critic = _str_field(entry, "critic", where, problems, required=True)
        revision = _str_field(entry, "revision", where, problems, required=True)
        if critic is not None and revision is not None:
            draft.critiques.append(
                CritiquePrinciple(f"hf{i}", _literal(critic.strip()), _literal(revision.strip()))
            )
            draft.critique_where.append(where)
    return draft


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


def _check(draft: _Draft, label: str) -> list[str]:
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


def _inspect(path: Path, label: str) -> tuple[_Draft | None, list[str]]:
    data, problems = _read_data(path, label)
    if problems:
        return None, problems
    if path.suffix.lower() == ".toml":
        draft = _from_caitool(data, label, problems)
    else:
        fmt = _detect(data)
        if fmt == "paper-critique":
            draft = _from_paper_critique(data, label, problems)
        elif fmt == "paper-comparison":
            draft = _from_paper_comparison(data, label, problems)
        elif fmt == "hf-recipe":
            draft = _from_hf_recipe(data, label, problems)
        elif fmt == "caitool":
            draft = _from_caitool(data, label, problems)
        else:
            problems.append(
                f"{label}: unrecognised JSON layout (top level is {_type_name(data)}); expected a caitool "
                "constitution object, the paper repository's CritiqueRevisionInstructions.json or "
                'RLMadisonInstructions.json, or the Hugging Face recipe\'s {"constitutions": [...]}'
            )
            return None, problems
        if fmt != "caitool":
            draft.name = path.stem
            draft.description = f"Imported from {path.name} ({_FORMAT_LABELS[fmt]})."
            draft.citation = path.name
    problems.extend(_check(draft, label))
    return draft, problems


def _render(text: str) -> str:
    # Validated texts hold no placeholder, so rendering only turns "$$" into "$". If ALLOWED_PLACEHOLDERS ever
    # grows, the texts must be kept as templates here and rendered where the values are known.
    return string.Template(text).substitute({})


def _build(draft: _Draft, source: str) -> Constitution:
    return Constitution(
        name=draft.name.strip(),
        description=draft.description.strip(),
        source=source,
        critiques=tuple(
            CritiquePrinciple(p.id, _render(p.critique), _render(p.revision)) for p in draft.critiques
        ),
        comparisons=tuple(ComparisonPrinciple(p.id, _render(p.text)) for p in draft.comparisons),
        citation=draft.citation.strip(),
    )


def _load_path(path: Path, source: str) -> Constitution:
    draft, problems = _inspect(path, str(path))
    if problems or draft is None:
        if len(problems) == 1 and problems[0].endswith(": file not found"):
            raise ConfigError(f"constitution file not found: {path}", hint=_builtin_hint())
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(
            f"invalid constitution: {problems[0]}{more}",
            hint=f"`caitool principles validate {path}` lists every problem; the format: docs/principles.md",
        )
    return _build(draft, source)


# ------------------------------------------------------------------------------------------------------------
# Public entry points


def _principles_dir() -> Path | None:
    from caitool.resources import data_dir

    try:
        return data_dir("principles")
    except FileNotFoundError:
        return None


def builtin_names() -> list[str]:
    """The packaged constitutions: stems of the *.toml files in the principles folder."""
    folder = _principles_dir()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.toml") if p.is_file())


def _builtin_hint() -> str:
    names = ", ".join(builtin_names()) or "(none found)"
    return f"builtin constitutions: {names}; or give the path of a .toml or .json file"


def _looks_like_path(target: str) -> bool:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in target for sep in seps) or target.lower().endswith((".toml", ".json"))


def load_constitution(name_or_path: str | os.PathLike[str] | None = None) -> Constitution:
    """Load a builtin constitution by name (None: the default) or a .toml/.json file by path.

    A .json file in a foreign layout (paper repository, Hugging Face recipe) is converted on the fly.
    Raises ConfigError, with the path in the message, for a missing, unreadable or invalid file.
    """
    target = DEFAULT_CONSTITUTION if name_or_path is None else os.fspath(name_or_path)
    if not target.strip():
        raise ConfigError("empty constitution name", hint=_builtin_hint())
    if not _looks_like_path(target):
        folder = _principles_dir()
        if folder is not None and target in builtin_names():
            return _load_path(folder / f"{target}.toml", f"builtin:{target}")
        if Path(target).is_file():
            return _load_path(Path(target), target)
        raise ConfigError(f"unknown constitution {target!r}", hint=_builtin_hint())
    return _load_path(Path(target).expanduser(), target)


def validate_file(path: str | os.PathLike[str]) -> list[str]:
    """Every problem found in the file, as 'PATH[:LINE[:COL]]: where: what' lines; empty when it is valid.

    Accepts the native layouts and the foreign JSON layouts that load_constitution converts. Never raises for
    bad content (or a missing file): that is reported as a problem.
    """
    p = Path(os.fspath(path))
    try:
        _, problems = _inspect(p, os.fspath(path))
    except Exception as exc:  # a bug here must not turn a report into a crash
        return [f"{os.fspath(path)}: could not be checked: {type(exc).__name__}: {exc}"]
    return problems


def import_file(path: str | os.PathLike[str]) -> Constitution:
    """Convert a file in a foreign layout (or a native one) into a Constitution; its name is the file stem."""
    return _load_path(Path(os.fspath(path)), os.fspath(path))


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
            f"critique = {_toml_string(_literal(p.critique))}",
            f"revision = {_toml_string(_literal(p.revision))}",
        ]
    for q in c.comparisons:
        lines += [
            "",
            "[[comparison]]",
            f"id = {_toml_string(q.id)}",
            f"text = {_toml_string(_literal(q.text))}",
        ]
    return "\n".join(lines) + "\n"
