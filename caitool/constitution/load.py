"""Loading a constitution by builtin name or path, validating a file, importing a foreign one."""

from __future__ import annotations

import os
import string
from pathlib import Path

from caitool.errors import ConfigError

from .foreign import FORMAT_LABELS, detect, from_hf_recipe, from_paper_comparison, from_paper_critique
from .model import ComparisonPrinciple, Constitution, CritiquePrinciple
from .read import Draft, check, from_caitool, read_data, type_name

DEFAULT_CONSTITUTION = "anthropic-cai-2022"


def _inspect(path: Path, label: str) -> tuple[Draft | None, list[str]]:
    """Parse the file, read it with its layout's reader, run the shared checks: draft and every problem."""
    data, problems = read_data(path, label)
    if problems:
        return None, problems
    if path.suffix.lower() == ".toml":
        draft = from_caitool(data, label, problems)
    else:
        fmt = detect(data)
        if fmt == "paper-critique":
            draft = from_paper_critique(data, label, problems)
        elif fmt == "paper-comparison":
            draft = from_paper_comparison(data, label, problems)
        elif fmt == "hf-recipe":
            draft = from_hf_recipe(data, label, problems)
        elif fmt == "caitool":
            draft = from_caitool(data, label, problems)
        else:
            problems.append(
                f"{label}: unrecognised JSON layout (top level is {type_name(data)}); expected a caitool "
                "constitution object, the paper repository's CritiqueRevisionInstructions.json or "
                'RLMadisonInstructions.json, or the Hugging Face recipe\'s {"constitutions": [...]}'
            )
            return None, problems
        if fmt != "caitool":
            draft.name = path.stem
            draft.description = f"Imported from {path.name} ({FORMAT_LABELS[fmt]})."
            draft.citation = path.name
    problems.extend(check(draft, label))
    return draft, problems


def _render(text: str) -> str:
    # Validated texts hold no placeholder, so rendering only turns "$$" into "$". If ALLOWED_PLACEHOLDERS ever
    # grows, the texts must be kept as templates here and rendered where the values are known.
    return string.Template(text).substitute({})


def _build(draft: Draft, source: str) -> Constitution:
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
