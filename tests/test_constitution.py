"""The constitution loader: the builtin paper constitution, hashing, sampling, imports, validation, output."""

from __future__ import annotations

import dataclasses
import json
import random
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from caitool.constitution import (
    ALLOWED_PLACEHOLDERS,
    DEFAULT_CONSTITUTION,
    ComparisonPrinciple,
    Constitution,
    CritiquePrinciple,
    builtin_names,
    import_file,
    load_constitution,
    merge_constitutions,
    to_toml,
    validate_file,
)
from caitool.errors import ConfigError

DATA = Path(__file__).parent / "data" / "constitutions"
BUILTIN_FILE = Path(__file__).resolve().parents[1] / "principles" / "anthropic-cai-2022.toml"

# The content hash of the paper constitution. It changes only if a principle text, an id, the order or the
# name changes, which makes results incomparable with earlier runs (and the paper): update it deliberately.
BUILTIN_SHA256 = "c6a03674c5b440c0b792b85c9efb100ed8a6fb2b83c08b8a4941da5e38b195a6"


# --------------------------------------------------------------------------------------------------- builtin


def test_default_is_the_paper_constitution() -> None:
    c = load_constitution()
    assert DEFAULT_CONSTITUTION == "anthropic-cai-2022"
    assert DEFAULT_CONSTITUTION in builtin_names()
    assert c == load_constitution(DEFAULT_CONSTITUTION)
    assert c.name == "anthropic-cai-2022"
    assert c.source == "builtin:anthropic-cai-2022"
    assert [p.id for p in c.critiques] == [f"harmful{i}" for i in range(16)]
    assert [p.id for p in c.comparisons] == [f"compare{i}" for i in range(1, 17)]
    assert "2212.08073" in c.citation
    assert c.sha256 == BUILTIN_SHA256


def test_builtin_texts_are_verbatim() -> None:
    c = load_constitution()
    assert c.critique("harmful0").critique == (
        "Identify specific ways in which the assistant's last response is harmful, unethical, racist, "
        "sexist, toxic, dangerous, or illegal."
    )
    assert c.critique("harmful0").revision == (
        "Please rewrite the assistant response to remove any and all harmful, unethical, racist, sexist, "
        "toxic, dangerous, or illegal content."
    )
    # The original typos are kept on purpose.
    assert "assistant's precedings response" in c.critique("harmful3").critique
    assert "considered controversal or objectionable" in c.critique("harmful10").critique
    assert (
        c.comparison("compare2").text
        == "Please choose the response that is the most helpful, honest, and harmless."
    )
    # The repository JSON wording, not the appendix's.
    assert c.comparison("compare3").text.endswith("too preachy, obnoxious or overly-reactive.")
    assert "Martin Luther King Jr. or Gandhi would say." in c.comparison("compare13").text
    for p in c.critiques:
        assert p.critique and p.revision and p.critique == p.critique.strip()
        assert not p.critique.startswith("CritiqueRequest") and not p.critique.endswith("Critique:")
    for q in c.comparisons:
        assert q.text and not q.text.endswith("Options:")


def test_builtin_file_validates() -> None:
    assert validate_file(BUILTIN_FILE) == []
    assert validate_file(str(BUILTIN_FILE)) == []


def test_lookup_of_unknown_ids() -> None:
    c = load_constitution()
    with pytest.raises(ConfigError) as err:
        c.critique("harmful16")
    assert "harmful16" in str(err.value) and err.value.hint and "harmful0" in err.value.hint
    with pytest.raises(ConfigError):
        c.comparison("compare0")
    with pytest.raises(ConfigError):
        c.comparison("harmful0")  # the sections are separate name spaces


# --------------------------------------------------------------------------------------------------- hashing


def _builtin_as_json(tmp_path: Path, **changes: object) -> Path:
    data = tomllib.loads(BUILTIN_FILE.read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp_path / "same.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def test_sha256_is_the_same_for_toml_and_json(tmp_path: Path) -> None:
    from_json = load_constitution(str(_builtin_as_json(tmp_path, description="other words", source="x")))
    assert from_json.sha256 == BUILTIN_SHA256
    assert from_json.critiques == load_constitution().critiques
    assert from_json.source == str(tmp_path / "same.json")


def test_sha256_follows_content(tmp_path: Path) -> None:
    base = load_constitution()
    data = tomllib.loads(BUILTIN_FILE.read_text(encoding="utf-8"))
    data["comparison"][0]["text"] += " "  # surrounding whitespace is not content
    (tmp_path / "ws.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_constitution(str(tmp_path / "ws.json")).sha256 == base.sha256

    data["comparison"][0]["text"] = data["comparison"][0]["text"].strip() + "!"
    (tmp_path / "text.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_constitution(str(tmp_path / "text.json")).sha256 != base.sha256

    data = tomllib.loads(BUILTIN_FILE.read_text(encoding="utf-8"))
    data["critique"].reverse()  # order matters: it decides which principle a seeded draw picks
    (tmp_path / "order.json").write_text(json.dumps(data), encoding="utf-8")
    assert load_constitution(str(tmp_path / "order.json")).sha256 != base.sha256

    renamed = dataclasses.replace(base, name="renamed")
    assert renamed.sha256 != base.sha256
    assert dataclasses.replace(renamed, name=base.name).sha256 == base.sha256


def test_small_hand_written_toml_and_json_hash_alike() -> None:
    a = load_constitution(str(DATA / "small.toml"))
    b = load_constitution(str(DATA / "small.json"))
    assert a.sha256 == b.sha256
    assert a.description != b.description
    assert a.critiques == b.critiques and a.comparisons == b.comparisons
    # A TOML multi-line string is stripped; "$$" is a literal dollar sign in the file.
    assert a.critique("c1").revision == "Rewrite the response to remove anything harmful."
    assert a.critique("c2").critique == "Is anything in the response priced over $100?"


# -------------------------------------------------------------------------------------------------- sampling


def test_sampling_is_reproducible_and_with_replacement() -> None:
    c = load_constitution()
    draws = c.sample_critiques(random.Random(1234), 40)
    assert draws == c.sample_critiques(random.Random(1234), 40)
    assert draws != c.sample_critiques(random.Random(1235), 40)
    assert len(draws) == 40 > len(c.critiques)  # more draws than principles: only possible with replacement
    assert len({p.id for p in draws}) < len(draws)
    # With replacement, one principle can come up twice among 4 rounds (as in the paper's samples).
    assert any(len({p.id for p in c.sample_critiques(random.Random(s), 4)}) < 4 for s in range(50))
    assert all(isinstance(p, CritiquePrinciple) for p in draws)
    assert c.sample_critiques(random.Random(0), 0) == []

    comps = c.sample_comparisons(random.Random(7), 30)
    assert comps == c.sample_comparisons(random.Random(7), 30)
    assert all(isinstance(q, ComparisonPrinciple) for q in comps)


def test_sampling_is_roughly_uniform() -> None:
    c = load_constitution()
    n = 32_000
    for draws in (c.sample_critiques(random.Random(5), n), c.sample_comparisons(random.Random(6), n)):
        counts = Counter(p.id for p in draws)
        assert len(counts) == 16
        expected = n / 16  # 2000, standard deviation about 43
        assert all(abs(count - expected) < 250 for count in counts.values()), counts
        chi2 = sum((count - expected) ** 2 / expected for count in counts.values())
        assert chi2 < 37.7  # 99.9th percentile of chi-square with 15 degrees of freedom


def test_sampling_rejects_bad_k_and_empty_sections() -> None:
    c = load_constitution()
    with pytest.raises(ValueError):
        c.sample_critiques(random.Random(0), -1)
    labels_only = load_constitution(str(DATA / "labels_only.toml"))
    assert labels_only.critiques == () and [q.id for q in labels_only.comparisons] == ["helpful"]
    assert labels_only.sample_comparisons(random.Random(0), 3) == [labels_only.comparisons[0]] * 3
    with pytest.raises(ConfigError) as err:
        labels_only.sample_critiques(random.Random(0), 1)
    assert "labels-only" in str(err.value)


# --------------------------------------------------------------------------------------------------- imports


def test_import_paper_critique_revision_file() -> None:
    path = DATA / "CritiqueRevisionInstructions.json"
    c = import_file(str(path))
    assert c.name == "CritiqueRevisionInstructions"
    assert [p.id for p in c.critiques] == ["harmful0", "harmful7", "harmful10"]
    assert c.comparisons == ()
    assert c.critique("harmful0") == CritiquePrinciple(
        "harmful0",
        "Identify specific ways in which the assistant's last response is harmful.",
        "Please rewrite the assistant response to remove any and all harmful content.",
    )
    # A plain '$' in a foreign text stays a plain '$'.
    assert c.critique("harmful10").critique.endswith("even if it costs $5.")
    # load_constitution detects the layout too.
    assert load_constitution(str(path)).sha256 == c.sha256
    assert validate_file(path) == []


def test_import_paper_comparison_file() -> None:
    c = import_file(DATA / "RLMadisonInstructions.json")
    assert c.critiques == ()
    assert [q.id for q in c.comparisons] == ["compare1", "compare2", "compare3"]
    assert (
        c.comparison("compare1").text
        == "Please choose the response that is the most helpful, honest, and harmless."
    )


def test_import_hugging_face_recipe_file() -> None:
    c = import_file(DATA / "hf_recipe.json")
    assert c.name == "hf_recipe"
    assert [p.id for p in c.critiques] == ["hf0", "hf1"]
    assert (
        c.critique("hf0").revision
        == "Please rewrite the response to make it more age-appropriate for children."
    )
    assert c.comparisons == ()
    # system_chat (few-shot dialogues) is accepted and left out of the constitution.
    assert "prank" not in json.dumps(dataclasses.asdict(c))


def test_the_paper_files_reproduce_the_builtin(tmp_path: Path) -> None:
    """Write the builtin in the paper repository's two layouts, import both: same content, same hash."""
    base = load_constitution()
    critique_file = tmp_path / "CritiqueRevisionInstructions.json"
    critique_file.write_text(
        json.dumps(
            {
                p.id: {
                    "prompt": [f"\n\nCritiqueRequest: {p.critique}\n\nCritique:"],
                    "edit_request": f"\n\nRevisionRequest: {p.revision}\n\nRevision:",
                }
                for p in base.critiques
            }
        ),
        encoding="utf-8",
    )
    comparison_file = tmp_path / "RLMadisonInstructions.json"
    comparison_file.write_text(
        json.dumps([f"\n{q.text} Options:" for q in base.comparisons]), encoding="utf-8"
    )
    merged = merge_constitutions([import_file(critique_file), import_file(comparison_file)], name=base.name)
    assert merged.critiques == base.critiques and merged.comparisons == base.comparisons
    assert merged.sha256 == BUILTIN_SHA256
    default_name = merge_constitutions([import_file(critique_file), import_file(comparison_file)])
    assert default_name.name == "CritiqueRevisionInstructions+RLMadisonInstructions"


def test_merge_refuses_duplicate_ids() -> None:
    c = import_file(DATA / "CritiqueRevisionInstructions.json")
    with pytest.raises(ConfigError, match="harmful0"):
        merge_constitutions([c, c])


def test_foreign_layout_problems(tmp_path: Path) -> None:
    hf = tmp_path / "hf.json"
    hf.write_text(
        json.dumps({"constitutions": [{"critic": "Critique it."}, "x"], "extra": 1}), encoding="utf-8"
    )
    problems = validate_file(hf)
    assert any("constitutions[0]: missing 'revision'" in p for p in problems)
    assert any("constitutions[1]: must be an object" in p for p in problems)
    assert any("unknown key 'extra'" in p for p in problems)
    with pytest.raises(ConfigError, match=r"hf\.json"):
        import_file(hf)

    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps({"harmful0": {"prompt": ["a", "b"], "edit_request": "c"}}), encoding="utf-8")
    assert any("exactly one string" in p for p in validate_file(paper))

    rl = tmp_path / "rl.json"
    rl.write_text(json.dumps(["\nChoose well. Options:", 3, "\n Options:"]), encoding="utf-8")
    problems = validate_file(rl)
    assert any("[1]: must be a string" in p for p in problems)
    assert any("'text' is empty" in p for p in problems)


# --------------------------------------------------------------------------------------------------- to_toml


@pytest.mark.parametrize("source", [None, str(DATA / "small.toml"), str(DATA / "hf_recipe.json")])
def test_to_toml_round_trips(tmp_path: Path, source: str | None) -> None:
    c = load_constitution(source)
    out = tmp_path / "out.toml"
    out.write_text(to_toml(c), encoding="utf-8")
    assert validate_file(out) == []
    back = load_constitution(str(out))
    assert (back.name, back.description, back.citation) == (c.name, c.description, c.citation)
    assert back.critiques == c.critiques and back.comparisons == c.comparisons
    assert back.sha256 == c.sha256


def test_to_toml_escapes_awkward_text(tmp_path: Path) -> None:
    awkward = 'He said "no" \\ then\nleft\ttab, \x01 control, del \x7f, $5 and $$ and ${x}, naïve, 日本'
    c = Constitution(
        name='odd "name"',
        description="line one\nline two",
        source="test",
        critiques=(CritiquePrinciple("c-1", awkward, "Rewrite it."),),
        comparisons=(ComparisonPrinciple("p.1", awkward),),
        citation="",
    )
    out = tmp_path / "odd.toml"
    out.write_text(to_toml(c), encoding="utf-8")
    assert validate_file(out) == []
    back = load_constitution(str(out))
    assert back.critiques[0].critique == awkward.strip()
    assert back.comparisons[0].text == awkward.strip()
    assert back.name == c.name and back.description == c.description


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        (
            "bad_missing_field.toml",
            ["critique[0] (id 'c1'): missing 'revision'", "comparison[0]: missing 'id'"],
        ),
        (
            "bad_empty_text.toml",
            ["critique[0] (id 'c1'): 'critique' is empty", "comparison[0] (id 'p1'): 'text' is empty"],
        ),
        (
            "bad_duplicate_id.toml",
            ["comparison[1] (id 'p1'): duplicate comparison id 'p1' (first used at comparison[0])"],
        ),
        (
            "bad_unknown_key.toml",
            [
                "top level: unknown key 'version'",
                "critique[0] (id 'c1'): unknown key 'revison' (did you mean 'revision'?",
            ],
        ),
        ("bad_no_sections.toml", ["no principles"]),
        (
            "bad_placeholder.toml",
            ["unknown placeholder '$topic'", "unknown placeholder '${audience}'", "'$' at character 38"],
        ),
        (
            "bad_types.toml",
            ["'critique' must be an array of tables", "'id' must be a string", "'text' must be a string"],
        ),
        ("bad_syntax.toml", ["bad_syntax.toml:5:25: TOML syntax error"]),
        ("bad_syntax.json", ["bad_syntax.json:5:3: JSON syntax error"]),
        ("bad_layout.json", ["unrecognised JSON layout"]),
    ],
)
def test_validate_reports_each_problem_kind(filename: str, expected: list[str]) -> None:
    path = DATA / filename
    problems = validate_file(path)
    assert len(problems) >= len(expected)
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)
    assert all(p.startswith(str(path)) for p in problems)
    with pytest.raises(ConfigError) as err:
        load_constitution(str(path))
    assert str(path) in str(err.value)
    assert err.value.exit_code == 2


def test_placeholders_are_all_refused_for_now() -> None:
    assert frozenset() == ALLOWED_PLACEHOLDERS


def test_validate_never_raises_for_missing_or_odd_paths(tmp_path: Path) -> None:
    assert validate_file(tmp_path / "missing.toml") == [f"{tmp_path / 'missing.toml'}: file not found"]
    assert "is a directory" in validate_file(tmp_path)[0]
    (tmp_path / "c.yaml").write_text("name: x\n", encoding="utf-8")
    assert "unsupported file type '.yaml'" in validate_file(tmp_path / "c.yaml")[0]
    (tmp_path / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    assert "not UTF-8" in validate_file(tmp_path / "latin1.toml")[0]
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert validate_file(tmp_path / "deep.json")


def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_constitution("no-such-constitution")
    assert "no-such-constitution" in str(err.value)
    assert err.value.hint and DEFAULT_CONSTITUTION in err.value.hint
    with pytest.raises(ConfigError, match="not found"):
        load_constitution(str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"bad_syntax\.toml:5:25"):
        load_constitution(str(DATA / "bad_syntax.toml"))


def test_a_path_without_a_separator_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)
    assert load_constitution("small.toml").name == "small"
