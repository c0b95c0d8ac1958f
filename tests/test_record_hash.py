"""The input hash in a run's done file must describe what the record says, not how the code holds it: a
half-finished run has to resume after a refactor that renames, moves or extends the job's dataclasses, and
after the input file is moved or the repository re-cloned elsewhere (CI clones into another folder)."""

from __future__ import annotations

from dataclasses import dataclass, field

from caitool.store import record_hash


@dataclass(frozen=True)
class Before:
    id: str
    where: str
    prompt: str
    turns: tuple[str, ...] = ()


@dataclass(frozen=True)
class After:  # renamed, and a field with a default added
    id: str
    where: str
    prompt: str
    turns: tuple[str, ...] = ()
    system: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def test_same_content_same_hash_across_a_refactor_and_a_move() -> None:
    old = Before("r1", "/home/a/in.jsonl:3", "How?", ("x",))
    new = After("r1", "/ci/clone/in.jsonl:7", "How?", ("x",))
    assert record_hash(old) == record_hash(new) != ""


def test_a_changed_prompt_or_a_set_field_changes_the_hash() -> None:
    base = After("r1", "w", "How?")
    assert record_hash(base) != record_hash(After("r1", "w", "How so?"))
    assert record_hash(base) != record_hash(After("r1", "w", "How?", system="Be brief."))
    assert record_hash(base) != record_hash(After("r1", "w", "How?", tags={"k": "v"}))


def test_an_item_without_a_stable_form_has_no_hash() -> None:
    assert record_hash(object()) == ""
