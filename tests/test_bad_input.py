"""Bad input: a clear `file:line` message, exit 2, no traceback; or skipped to a rejects file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import read_jsonl, run_cli, write_jsonl

CASES = {
    "malformed-json": (b'{"prompt": "ok"}\n{"prompt": "broken\n', ":2: malformed JSON"),
    "missing-field": (b'{"prompt": "ok"}\n{"question": "no prompt field"}\n', ":2: no prompt field"),
    "empty-file": (b"", ":0: no records"),
    "blank-lines-only": (b"\n\n  \n", ":0: no records"),
    "non-utf8": (b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n', ":2: not UTF-8"),
    "not-an-object": (b'{"prompt": "ok"}\n[1, 2]\n', ":2: expected a JSON object"),
    "bad-role": (b'{"messages": [{"role": "robot", "content": "x"}]}\n', ":1: messages[0] has unknown role"),
    "ends-with-assistant-only": (b'{"messages": [{"role": "assistant", "content": "x"}]}\n', ":1:"),
    "empty-prompt": (b'{"prompt": "  "}\n', ":1: field 'prompt' is empty"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_file_and_line(tmp_path: Path, case: str) -> None:
    data, expected = CASES[case]
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    # --model points at a closed port: a bad file must be reported before any model call matters.
    r = run_cli(
        "critique-revise",
        str(src),
        "--model",
        "openai/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--retries",
        "0",
        "-o",
        str(tmp_path / "out.jsonl"),
    )
    assert r.returncode == 2, r.stderr
    assert f"{src}{expected}" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_input_on_stdin_names_stdin(tmp_path: Path) -> None:
    r = run_cli(
        "critique-revise",
        "-",
        "--model",
        "openai/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
        input='{"prompt": \n',
    )
    assert r.returncode == 2
    assert "<stdin>:1: malformed JSON" in r.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    r = run_cli(
        "critique-revise",
        str(tmp_path / "nope.jsonl"),
        "--model",
        "openai/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
    )
    assert r.returncode == 2 and "no such file" in r.stderr


def test_missing_input_leaves_no_output_behind(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise",
        str(tmp_path / "nope.jsonl"),
        "-o",
        str(out),
        "--on-bad-input",
        "skip",
        "--model",
        "openai/m",
        "--base-url",
        "http://127.0.0.1:9/v1",
    )
    assert r.returncode == 2 and f"{tmp_path / 'nope.jsonl'}:0: no such file" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no output, manifest, steps, lock or rejects file


def test_a_utf8_byte_order_mark_is_accepted(fake, tmp_path: Path) -> None:
    src = tmp_path / "bom.jsonl"
    src.write_bytes(b'\xef\xbb\xbf{"id": "a", "prompt": "hello"}\r\n{"id": "b", "prompt": "again"}\r\n')
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "--model",
        "openai/m",
        "--base-url",
        fake.openai_base_url,
        "--rounds",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert [row["id"] for row in read_jsonl(out)] == ["a", "b"]


def test_unknown_flag_and_unknown_provider_exit_2(tmp_path: Path) -> None:
    assert run_cli("critique-revise", "--no-such-flag").returncode == 2
    src = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}])
    r = run_cli("critique-revise", str(src), "--model", "nosuch/model")
    assert r.returncode == 2 and "unknown provider" in r.stderr


def test_skip_mode_writes_rejects_and_goes_on(fake, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"id": "a", "prompt": "fine"}\n{"prompt": \n{"id": "b", "nope": 1}\n\xff\xfe\n'
        b'{"id": "c", "prompt": "also fine"}\n'
    )
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "--model",
        "openai/m",
        "--base-url",
        fake.openai_base_url,
        "--rounds",
        "1",
        "--on-bad-input",
        "skip",
    )
    assert r.returncode == 0, r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == ["a", "c"]
    rejects = read_jsonl(tmp_path / "out.jsonl.rejects.jsonl")
    assert [rj["where"] for rj in rejects] == [f"{src}:2", f"{src}:3", f"{src}:4"]
    assert rejects[1]["record"] == {"id": "b", "nope": 1}
    # Lines that are not records keep their raw text, so the rejects file loses nothing of the input.
    assert rejects[0]["line"] == '{"prompt": ' and "record" not in rejects[0]
    assert rejects[2]["line"] == "\\xff\\xfe"
    assert "3 bad input lines skipped" in r.stderr


def test_duplicate_ids_are_processed_once(fake, tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"prompt": "same"}, {"prompt": "same"}, {"id": "x", "prompt": "y"}]
    )
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "--model",
        "openai/m",
        "--base-url",
        fake.openai_base_url,
        "--rounds",
        "1",
    )
    assert r.returncode == 0
    assert len(read_jsonl(out)) == 2
    assert "1 duplicate ids skipped" in r.stderr
