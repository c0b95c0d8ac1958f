"""NaN and Infinity are not numbers a request body or a manifest can carry as JSON: a flag given one is a
usage error (exit 2, the flag named) before any file is written or request sent, not a traceback or an
invalid manifest (reliability report R28)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli, write_jsonl

PROMPTS = [{"id": "p0", "prompt": "Hello?"}]


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--temperature", "inf"), ("--top-p", "nan"), ("--timeout", "inf"), ("--rpm", "inf"), ("--tpm", "nan")],
)
def test_a_non_finite_client_or_sampling_flag_is_a_usage_error(tmp_path: Path, flag: str, value: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    out = tmp_path / "out.jsonl"
    r = run_cli("critique-revise", str(src), "-o", str(out), "-m", "openai/m", flag, value, env=cli_env())
    assert r.returncode == 2, r.stderr
    assert flag in r.stderr  # "must be a finite number", or the flag's own range check
    assert "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.glob("out.jsonl.*"))


def test_a_non_finite_mix_ratio_is_a_usage_error(tmp_path: Path) -> None:
    pair = {"prompt": "Q?", "chosen": "a", "rejected": "b"}
    ai = write_jsonl(tmp_path / "ai.jsonl", [{**pair, "p_chosen": 0.8}])
    human = write_jsonl(tmp_path / "human.jsonl", [pair])
    out = tmp_path / "m.jsonl"
    r = run_cli("mix", "--ai", str(ai), "--human", str(human), "--ratio", "nan:1", "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert "--ratio" in r.stderr and "finite" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
