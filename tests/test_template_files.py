"""User-supplied template, few-shot and monitors files are checked whole when loaded: a missing key, a wrong
type or an unknown key is a `ConfigError` reading `file: key: problem` (exit 2), never a KeyError or
TypeError traceback in the middle of a run. The formats are in docs/prompts.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from caitool.errors import ConfigError
from caitool.evaluation.stats import load_monitors
from caitool.tasks.critique_revise import load_templates
from tests.conftest import prompts, run_cli, write_jsonl


def _toml(tmp_path: Path, text: str, name: str = "t.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_packaged_files_load() -> None:
    t = load_templates()
    assert t.chat["critique_turn"] and t.completion["stop"] and t.fewshot
    assert load_monitors().refusal


def _packaged_with(old: str, new: str) -> str:
    """The packaged template text with one line changed."""
    text = Path(load_templates().source).read_text()
    assert old in text
    return text.replace(old, new, 1)


TEMPLATE_CASES = {
    # the natural "copy and change one key": before, KeyError: 'critique_turn' mid-run
    "partial": ('[chat]\nsystem = "Be terse."\n', "chat.critique_turn: missing"),
    "table-not-a-table": ("chat = 1\n", "chat: expected a table, got an integer"),
    "key-wrong-type": (
        "[chat]\ncritique_turn = 5\n",
        "chat.critique_turn: expected a string, got an integer",
    ),
    "unknown-table": ("[chta]\n", "chta: unknown table"),
    "stop-not-a-list": (
        _packaged_with("stop = [", "stop = 'x'  # ["),
        "completion.stop: expected a list of strings",
    ),
    "stray-dollar": (
        _packaged_with('critique_turn = "$critique_request"', "critique_turn = 'pay $5'"),
        "chat.critique_turn: template has a stray '$'",
    ),
    "unknown-placeholder": (
        _packaged_with('critique_turn = "$critique_request"', "critique_turn = '$critique'"),
        "chat.critique_turn: unknown placeholder(s) $critique",
    ),
    "unknown-key": (
        _packaged_with("[chat]\n", "[chat]\ncritque_turn = 'typo'\n"),
        "chat.critque_turn: unknown key",
    ),
}


@pytest.mark.parametrize("case", list(TEMPLATE_CASES))
def test_bad_template_is_a_config_error_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, expected = TEMPLATE_CASES[case]
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_templates(path)
    assert f"{path}: {expected}" in str(err.value)


FEWSHOT_CASES = {
    "not-tables": ("example = 5\n", "example: expected [[example]] tables, got an integer"),
    "not-a-table": ("example = [1]\n", "example 1: expected an [[example]] table, got an integer"),
    "string": ('example = ["abc"]\n', "example 1: expected an [[example]] table, got a string"),
    "missing-key": (
        "[[example]]\nconversation = [{role = 'user', content = 'hi'}]\n",
        "example 1: response: missing",
    ),
    "bad-role": (
        "[[example]]\nconversation = [{role = 'wizard', content = 'hi'}]\n",
        "example 1: conversation[0].role: 'wizard' is not",
    ),
    "wrong-type": (
        "[[example]]\nconversation = [{role = 'user', content = 'hi'}]\nresponse = 1\n",
        "example 1: response: expected a string, got an integer",
    ),
}


@pytest.mark.parametrize("case", list(FEWSHOT_CASES))
def test_bad_fewshot_file_is_a_config_error(tmp_path: Path, case: str) -> None:
    text, expected = FEWSHOT_CASES[case]
    path = _toml(tmp_path, text, "f.toml")
    with pytest.raises(ConfigError) as err:
        load_templates(fewshot=path)
    assert f"{path}: {expected}" in str(err.value)


MONITOR_CASES = {
    "table-not-a-table": ("refusal = 1\n", "refusal: expected a table"),
    "phrases-not-a-list": ('[refusal]\nphrases = "x"\n', "refusal.phrases: expected a list"),
    "bad-regex": ('[revision_prefix]\npatterns = ["("]\n', "revision_prefix.patterns[0]: bad regular"),
    "no-patterns": ("[revision_prefix]\n", "revision_prefix.patterns: expected a list"),
    "number-not-a-number": ('[boilerplate]\nngram = "x"\n', "boilerplate.ngram: expected an integer"),
    "infinite-threshold": ("[alerts]\nrefusal_rate = inf\n", "alerts.refusal_rate: expected a finite"),
    "unknown-table": ("[refusl]\nphrases = []\n", "refusl: unknown table"),
    "unknown-key": ('[refusal]\nphrase = ["x"]\n', "refusal.phrase: unknown key"),
}


@pytest.mark.parametrize("case", list(MONITOR_CASES))
def test_bad_monitors_file_is_a_config_error(tmp_path: Path, case: str) -> None:
    text, expected = MONITOR_CASES[case]
    path = _toml(tmp_path, text, "m.toml")
    with pytest.raises(ConfigError) as err:
        load_monitors(path)
    assert f"{path}: {expected}" in str(err.value)


def test_a_monitors_table_replaces_only_its_own(tmp_path: Path) -> None:
    mon = load_monitors(_toml(tmp_path, '[refusal]\nphrases = ["No Way"]\n', "m.toml"))
    assert mon.refusal == ("no way",) and mon.evasive == load_monitors().evasive


def test_cli_reports_bad_files_with_exit_2(tmp_path: Path) -> None:
    src = str(write_jsonl(tmp_path / "in.jsonl", prompts(1)))
    template = _toml(tmp_path, '[chat]\nsystem = "Be terse."\n')
    r = run_cli("critique-revise", src, "--template", template, "--dry-run")
    assert r.returncode == 2 and f"{template}: chat.critique_turn: missing" in r.stderr, r.stderr
    fewshot = _toml(tmp_path, "example = [5]\n", "f.toml")
    r = run_cli("critique-revise", src, "--fewshot-file", fewshot, "--dry-run")
    assert r.returncode == 2 and f"{fewshot}: example 1: expected an [[example]] table" in r.stderr
    monitors = _toml(tmp_path, "refusal = 1\n", "m.toml")
    rows = write_jsonl(tmp_path / "s.jsonl", [{"id": "a", "response": "hello there"}])
    r = run_cli("stats", str(rows), "--monitors", monitors)
    assert r.returncode == 2 and f"{monitors}: refusal: expected a table" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_label_pairs_templates_and_examples_are_checked_at_load(tmp_path: Path) -> None:
    from caitool.tasks.label_pairs import load_label_templates

    for name in ("label_pairs", None):  # packaged: the caitool format and the default one
        assert load_label_templates(name).chat["question"]
    # before: KeyError: 'question' once the first record was asked
    partial = _toml(tmp_path, '[chat]\nanswer = "($answer)"\n')
    with pytest.raises(ConfigError, match=r"t\.toml: \[completion\]: missing table"):
        load_label_templates(partial)
    with pytest.raises(ConfigError, match=r"t\.toml: completion: expected a table, got an integer"):
        load_label_templates(_toml(tmp_path, "completion = 1\n"))
    fewshot = _toml(tmp_path, "[[example]]\nconversation = [{role = 'user', content = 'hi'}]\n", "f.toml")
    with pytest.raises(ConfigError, match=r"f\.toml: example 1: response_a: missing"):
        load_label_templates("label_pairs", fewshot)
