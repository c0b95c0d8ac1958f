"""Importers of the foreign JSON layouts: the paper repository's two instruction files and the HF CAI recipe.

Each importer turns parsed JSON into a `Draft` (the same intermediate as caitool's own layout), keeping the
paper's texts verbatim but for their prompt framing ("CritiqueRequest: ... Critique:"), which caitool's
prompt templates supply. To add a layout: recognise it in `detect`, add a `from_*` function here and a branch
in `load._inspect`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .model import ComparisonPrinciple, CritiquePrinciple
from .read import TOP_KEYS, Draft, literal, str_field, type_name, unknown_keys

# Names of the foreign layouts, as shown in descriptions and messages.
FORMAT_LABELS = {
    "caitool": "caitool constitution",
    "paper-critique": "the paper repository's critique/revision instruction layout",
    "paper-comparison": "the paper repository's comparison instruction layout",
    "hf-recipe": "the Hugging Face CAI recipe layout",
}


def detect(data: Any) -> str:
    """The layout of a parsed JSON document: caitool, paper-critique, paper-comparison, hf-recipe, unknown."""
    if isinstance(data, list):
        return "paper-comparison"
    if not isinstance(data, dict):
        return "unknown"
    if "constitutions" in data:
        return "hf-recipe"
    if not any(k in TOP_KEYS for k in data) and any(
        isinstance(v, dict) and ("prompt" in v or "edit_request" in v) for v in data.values()
    ):
        return "paper-critique"
    return "caitool"


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


def from_paper_critique(data: dict[str, Any], label: str, problems: list[str]) -> Draft:
    draft = Draft(fmt="paper-critique", has_sections=bool(data))
    for key, value in data.items():
        where = f"{label}: {key!r}"
        if not isinstance(value, dict):
            problems.append(
                f"{where}: must be an object with 'prompt' and 'edit_request', not {type_name(value)}"
            )
            continue
        unknown_keys(value, ("prompt", "edit_request"), where, problems)
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
            problems.append(f"{where}: 'prompt' must be a list of one string, not {type_name(prompt)}")
            prompt = None
        edit = str_field(value, "edit_request", where, problems, required=True)
        if isinstance(prompt, str) and edit is not None:
            critique = _strip_frame(prompt, ("CritiqueRequest:", "Critique Request:"), ("Critique:",))
            revision = _strip_frame(edit, ("RevisionRequest:", "Revision Request:"), ("Revision:",))
            draft.critiques.append(CritiquePrinciple(key.strip(), literal(critique), literal(revision)))
            draft.critique_where.append(where)
    return draft


def from_paper_comparison(data: list[Any], label: str, problems: list[str]) -> Draft:
    draft = Draft(fmt="paper-comparison", has_sections=bool(data))
    for i, value in enumerate(data):
        where = f"{label}: [{i}]"
        if not isinstance(value, str):
            problems.append(f"{where}: must be a string, not {type_name(value)}")
            continue
        text = _strip_frame(value, (), ("Options:",))
        draft.comparisons.append(ComparisonPrinciple(f"compare{i + 1}", literal(text)))
        draft.comparison_where.append(where)
    return draft


def from_hf_recipe(data: dict[str, Any], label: str, problems: list[str]) -> Draft:
    draft = Draft(fmt="hf-recipe")
    # system_chat holds few-shot dialogues, not principles: accepted and left out (caitool's are in prompts/).
    unknown_keys(data, ("constitutions", "system_chat"), f"{label}: top level", problems)
    entries = data.get("constitutions")
    if not isinstance(entries, list):
        problems.append(f"{label}: 'constitutions' must be a list of objects, not {type_name(entries)}")
        return draft
    draft.has_sections = bool(entries)
    for i, entry in enumerate(entries):
        where = f"{label}: constitutions[{i}]"
        if not isinstance(entry, dict):
            problems.append(
                f"{where}: must be an object with 'critic' and 'revision', not {type_name(entry)}"
            )
            continue
        unknown_keys(entry, ("critic", "revision"), where, problems)
        critic = str_field(entry, "critic", where, problems, required=True)
        revision = str_field(entry, "revision", where, problems, required=True)
        if critic is not None and revision is not None:
            draft.critiques.append(
                CritiquePrinciple(f"hf{i}", literal(critic.strip()), literal(revision.strip()))
            )
            draft.critique_where.append(where)
    return draft
