"""`caitool principles ...` run as a real subprocess: stdout, stderr and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("typer")

from caitool.constitution import load_constitution

DATA = Path(__file__).parent / "data" / "constitutions"
ROOT = Path(__file__).resolve().parents[1]


def caitool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("CAITOOL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "caitool", "principles", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_list_json_is_one_object_per_principle() -> None:
    r = caitool("list", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 32
    assert rows[0] == {
        "constitution": "anthropic-cai-2022",
        "section": "critique",
        "id": "harmful0",
        "critique": load_constitution().critique("harmful0").critique,
        "revision": load_constitution().critique("harmful0").revision,
    }
    assert [r["id"] for r in rows if r["section"] == "comparison"] == [f"compare{i}" for i in range(1, 17)]


def test_list_table() -> None:
    r = caitool("list")
    assert r.returncode == 0, r.stderr
    for fragment in (
        "anthropic-cai-2022",
        "16 critique/revision pairs",
        "16 comparison principles",
        "harmful15",
        "compare16",
        f"sha256 {load_constitution().sha256}",
    ):
        assert fragment in r.stdout


def test_list_another_constitution() -> None:
    r = caitool("list", "--json", "--constitution", str(DATA / "labels_only.toml"))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == ["helpful"]
    r = caitool("list", "--constitution", str(DATA / "hf_recipe.json"))
    assert r.returncode == 0, r.stderr
    assert "hf1" in r.stdout and "comparison principles" not in r.stdout


def test_list_unknown_constitution_fails_with_exit_2() -> None:
    r = caitool("list", "--constitution", "no-such-constitution")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "unknown constitution 'no-such-constitution'" in r.stderr
    assert "anthropic-cai-2022" in r.stderr  # the hint names the builtin ones


def test_show() -> None:
    r = caitool("show", "harmful3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "id: harmful3"
    assert lines[1] == "section: critique"
    assert lines[2].startswith(
        "critique: Identify specific ways in which the assistant's precedings response"
    )
    assert lines[3].startswith("revision: Rewrite the assistant response to remove all harmful content")

    r = caitool("show", "compare2", "--json")
    assert r.returncode == 0, r.stderr
    assert (
        json.loads(r.stdout)["text"]
        == "Please choose the response that is the most helpful, honest, and harmless."
    )


def test_show_unknown_id() -> None:
    r = caitool("show", "harmful99")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "no principle 'harmful99'" in r.stderr


def test_validate_ok() -> None:
    sha = load_constitution().sha256
    for target in ("principles/anthropic-cai-2022.toml", "anthropic-cai-2022"):
        r = caitool("validate", target)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout == f"ok: 16 critique pairs, 16 comparison principles, sha256 {sha}\n"
    r = caitool("validate", str(DATA / "RLMadisonInstructions.json"))
    assert r.returncode == 0
    assert r.stdout.startswith("ok: 0 critique pairs, 3 comparison principles, sha256 ")


@pytest.mark.parametrize(
    ("filename", "fragment"),
    [
        ("bad_duplicate_id.toml", "duplicate comparison id 'p1'"),
        ("bad_placeholder.toml", "unknown placeholder '$topic'"),
        ("bad_syntax.toml", "bad_syntax.toml:5:25: TOML syntax error"),
        ("missing.toml", "file not found"),
    ],
)
def test_validate_problems_exit_2(filename: str, fragment: str) -> None:
    r = caitool("validate", str(DATA / filename))
    assert r.returncode == 2
    assert fragment in r.stdout
    assert all(line.startswith(str(DATA / filename)) for line in r.stdout.splitlines())
    assert "problem" in r.stderr


def test_import_to_stdout() -> None:
    r = caitool("import", str(DATA / "CritiqueRevisionInstructions.json"))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(r.stdout)
    assert data["name"] == "CritiqueRevisionInstructions"
    assert [p["id"] for p in data["critique"]] == ["harmful0", "harmful7", "harmful10"]
    assert data["critique"][2]["critique"].endswith("even if it costs $$5.")  # escaped for string.Template
    assert "comparison" not in data


def test_import_merges_files_to_output(tmp_path: Path) -> None:
    out = tmp_path / "paper.toml"
    r = caitool(
        "import",
        str(DATA / "CritiqueRevisionInstructions.json"),
        str(DATA / "RLMadisonInstructions.json"),
        "-o",
        str(out),
        "--name",
        "paper-subset",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert f"wrote {out}" in r.stderr
    c = load_constitution(str(out))
    assert c.name == "paper-subset"
    assert (len(c.critiques), len(c.comparisons)) == (3, 3)
    r = caitool("validate", str(out))
    assert r.returncode == 0 and c.sha256 in r.stdout

    r = caitool("list", "--json", "--constitution", str(out))
    assert len(r.stdout.splitlines()) == 6


def test_import_hf_recipe_and_bad_input(tmp_path: Path) -> None:
    r = caitool("import", str(DATA / "hf_recipe.json"), "--output", str(tmp_path / "hf.toml"))
    assert r.returncode == 0, r.stderr
    assert [p.id for p in load_constitution(str(tmp_path / "hf.toml")).critiques] == ["hf0", "hf1"]

    r = caitool("import", str(DATA / "bad_layout.json"))
    assert r.returncode == 2
    assert r.stdout == ""
    assert "error:" in r.stderr and "bad_layout.json" in r.stderr
