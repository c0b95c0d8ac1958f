"""What caitool prints on stderr is plain text: paths, ids, model names, error text and input data are never
read as Rich markup (which ate `[red]` and crashed on `[/x]`), and a closed stderr (`2>&-`) does no harm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, cli_env, prompts, read_jsonl, run_cli, write_jsonl

CLOSED = "http://127.0.0.1:9/v1"  # nothing listens: these runs must stop before any model call matters


def test_missing_input_path_with_brackets_is_printed_as_is(tmp_path: Path) -> None:
    for name in ("data[red].jsonl", "x[/bold].jsonl", "[/]missing.jsonl"):
        r = run_cli("critique-revise", str(tmp_path / name), "-m", "openai/m", "--base-url", CLOSED)
        assert r.returncode == 2, r.stderr
        assert f"{tmp_path / name}:0: no such file" in r.stderr
        assert "Traceback" not in r.stderr


def test_markup_in_input_data_is_shown_not_rendered(tmp_path: Path) -> None:
    src = tmp_path / "c.jsonl"
    for role in ("[/x]", "[bold red]PWNED[/]"):
        src.write_text(json.dumps({"messages": [{"role": role, "content": "y"}]}) + "\n")
        r = run_cli("critique-revise", str(src), "-m", "openai/m", "--base-url", CLOSED)
        assert r.returncode == 2, r.stderr
        assert f"unknown role {role!r}" in r.stderr
        assert "Traceback" not in r.stderr


def test_hint_keeps_its_brackets(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    r = run_cli("critique-revise", str(src), "--constitution", "helpfulness", "-m", "openai/m")
    assert r.returncode == 2, r.stderr
    assert "needs a constitution with a [[critique]] section" in r.stderr


def test_constitution_id_with_closing_tag_is_a_clean_error(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    r = run_cli("critique-revise", str(src), "--constitution", "[/x] y", "-m", "openai/m")
    assert r.returncode == 2, r.stderr
    assert "[/x] y" in r.stderr and "Traceback" not in r.stderr


def test_model_and_output_names_with_tags_survive_the_summary(fake: FakeServer, tmp_path: Path) -> None:
    # Before: the run completed, then the summary line crashed with MarkupError (exit 1).
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "o[/]x[red].jsonl"
    args = ["critique-revise", str(src), "-o", str(out), "--base-url", fake.openai_base_url, "--rounds", "1"]
    r = run_cli(*args, "-m", "openai/x[/]y")
    assert r.returncode == 0, r.stderr
    assert "openai/x[/]y: " in r.stderr and "Traceback" not in r.stderr
    assert len(read_jsonl(out)) == 2


def test_closed_stderr_does_not_crash_or_touch_the_output(fake: FakeServer, tmp_path: Path) -> None:
    # With fd 2 closed, the output file used to take fd 2 and the first stderr check raised (exit 1).
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable, "-m", "caitool", "critique-revise", str(src), "-o", str(out),
        "-m", "openai/m", "--base-url", fake.openai_base_url, "--rounds", "1",
    ]  # fmt: skip
    r = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh", *cmd], env=cli_env(), cwd=REPO, timeout=120, capture_output=False
    )
    assert r.returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]  # every line is a whole JSON row
    assert sorted(row["id"] for row in rows) == ["p0", "p1", "p2"]


def test_closed_stderr_still_gives_the_exit_code(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "caitool", "critique-revise", str(tmp_path / "missing.jsonl")]
    r = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", *cmd], env=cli_env(), cwd=REPO, timeout=60)
    assert r.returncode == 2
