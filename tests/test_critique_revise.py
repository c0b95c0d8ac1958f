"""critique-revise end to end through the real CLI, the real SDKs and real HTTP to the local fake server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from caitool.constitution import load_constitution
from caitool.tasks.critique_revise import draw_principles
from tests.conftest import REPO, SENTINEL_KEY, cli_env, prompts, read_jsonl, run_cli, write_jsonl


def cr(fake, *args: str, **kw):  # type: ignore[no-untyped-def]
    return run_cli(
        "critique-revise",
        "--model",
        "openai/test-model",
        "--base-url",
        fake.openai_base_url,
        "--retries",
        "3",
        *args,
        **kw,
    )


def test_trace_has_every_round_with_seeded_principles(fake, tmp_path: Path) -> None:
    fake.configure(
        reply_script=[["Critique", "CRIT"], ["rewrite", "Revision: REVISED"], ["Revise", "REVISED"]]
    )
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "3", "--seed", "7")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert sorted(row["id"] for row in rows) == ["p0", "p1", "p2"]
    cons = load_constitution(None)
    for row in rows:
        assert row["prompt"] == [{"role": "user", "content": f"red-team question number {row['id'][1:]}?"}]
        assert row["initial_response"]
        assert [r["round"] for r in row["rounds"]] == [1, 2, 3]
        expected = [p.id for p in draw_principles(cons, 7, row["id"], 3)]
        assert [r["principle_id"] for r in row["rounds"]] == expected
        for rnd in row["rounds"]:
            p = cons.critique(rnd["principle_id"])
            assert rnd["critique_request"] == p.critique and rnd["revision_request"] == p.revision
            assert rnd["usage"]["calls"] == 2
        assert row["final_response"] == row["rounds"][-1]["revision"]
        assert row["caitool"]["constitution_sha256"] == cons.sha256
        assert row["usage"]["calls"] == 1 + 2 * 3
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["settings"]["rounds"] == 3
    assert manifest["counts"]["done"] == 3


def test_revision_echo_is_stripped_and_unchanged_flagged(fake, tmp_path: Path) -> None:
    # The fake answers every request with the same text, so each revision repeats the response it revises.
    fake.configure(reply_text="Sure, here is a revised response: Same answer.")
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "q", "response": "Same answer."}])
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1", "--response-field", "response")
    assert r.returncode == 0, r.stderr
    (row,) = read_jsonl(out)
    assert row["initial_response"] == "Same answer."
    rnd = row["rounds"][0]
    assert rnd["revision"] == "Same answer."
    assert "echo_stripped" in rnd["flags"] and "unchanged" in rnd["flags"]


def test_sft_format_and_keep_rounds(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "sft.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "2", "--format", "sft", "--keep-rounds")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert len(rows) == 4
    assert sorted((row["id"], row["round"]) for row in rows) == [("p0", 1), ("p0", 2), ("p1", 1), ("p1", 2)]
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == 4 and "messages" in ds.column_names


def test_no_critique_makes_one_call_per_round(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "2", "--no-critique")
    assert r.returncode == 0, r.stderr
    (row,) = read_jsonl(out)
    assert all(rnd["critique"] == "" and rnd["usage"]["calls"] == 1 for rnd in row["rounds"])
    assert fake.stats()["total"] == 3


def test_completion_format_renders_the_paper_transcript(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    r = cr(fake, str(src), "--rounds", "1", "--prompt-format", "completion", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "\n\nHuman: red-team question number 0?\n\nAssistant:" in r.stdout
    assert "\n\nCritiqueRequest: " in r.stdout and "\n\nRevisionRequest: " in r.stdout
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1", "--prompt-format", "completion")
    assert r.returncode == 0, r.stderr
    assert fake.stats()["by_endpoint"].get("/v1/completions") == 3


def test_dry_run_calls_nothing(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    r = cr(fake, str(src), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "round 1 critique" in r.stdout and "<initial response>" in r.stdout
    assert fake.stats()["total"] == 0


def test_stdin_to_stdout_pipeline_head_gets_one_valid_line(fake) -> None:
    src = (REPO / "examples" / "red_team_prompts.jsonl").read_text()
    cmd = (
        f"{sys.executable} -m caitool critique-revise - --model openai/m --base-url {fake.openai_base_url} "
        "--rounds 1 | head -1"
    )
    proc = subprocess.run(
        ["bash", "-c", cmd], input=src, capture_output=True, text=True, env=cli_env(), timeout=60
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["id"].startswith("rt-") and row["rounds"]
    assert "Traceback" not in proc.stderr


def test_progress_and_summary_go_to_stderr_only(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    r = cr(fake, str(src), "--rounds", "1")
    assert r.returncode == 0
    for line in r.stdout.splitlines():
        json.loads(line)
    assert "critique-revise: complete" in r.stderr
    q = cr(fake, str(src), "--rounds", "1", "--quiet")
    assert q.stderr == ""


def test_resume_skips_done_ids_and_repairs_a_torn_line(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    out = tmp_path / "out.jsonl"
    assert cr(fake, str(src), "-o", str(out), "--rounds", "1", "--limit", "2").returncode == 0
    assert len(read_jsonl(out)) == 2
    with out.open("a") as fh:
        fh.write('{"id": "p2", "prompt": [{"role": "us')  # a crash mid-write
    fake.reset()
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1")
    assert r.returncode == 0, r.stderr
    assert "repaired a torn last line" in r.stderr
    ids = [row["id"] for row in read_jsonl(out)]
    assert sorted(ids) == [f"p{i}" for i in range(5)]
    assert fake.stats()["total"] == 3 * 3  # only the three missing records were paid for


def test_changed_settings_are_refused_unless_overwrite(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    out = tmp_path / "out.jsonl"
    assert cr(fake, str(src), "-o", str(out), "--rounds", "1").returncode == 0
    r = cr(fake, str(src), "-o", str(out), "--rounds", "2")
    assert r.returncode == 2
    assert "different settings" in r.stderr and "rounds" in r.stderr and "Traceback" not in r.stderr
    r = cr(fake, str(src), "-o", str(out), "--rounds", "2", "--overwrite")
    assert r.returncode == 0
    assert len(read_jsonl(out)[0]["rounds"]) == 2


def test_foreign_output_file_is_not_appended_to(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    out = tmp_path / "precious.jsonl"
    out.write_text('{"mine": 1}\n')
    r = cr(fake, str(src), "-o", str(out))
    assert r.returncode == 2 and "not written by caitool" in r.stderr
    assert out.read_text() == '{"mine": 1}\n'


def test_multi_turn_context_and_per_turn(fake, tmp_path: Path) -> None:
    src = REPO / "examples" / "conversations.jsonl"
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1", "--per-turn")
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in read_jsonl(out)}
    assert set(rows) == {"conv-001-t1", "conv-001-t2", "conv-002-t1", "conv-002-t2"}
    assert [m["role"] for m in rows["conv-001-t2"]["prompt"]] == ["user", "assistant", "user"]
    assert rows["conv-002-t1"]["prompt"][0]["role"] == "system"
    out2 = tmp_path / "out2.jsonl"
    r = cr(fake, str(src), "-o", str(out2), "--rounds", "1")
    assert r.returncode == 0
    assert {row["id"] for row in read_jsonl(out2)} == {"conv-001", "conv-002"}


def test_hh_rlhf_transcripts_with_field(fake, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    r = cr(
        fake,
        str(REPO / "examples" / "hh_transcripts.jsonl"),
        "-o",
        str(out),
        "--rounds",
        "1",
        "--field",
        "chosen",
        "--keep-response",
    )
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    first = next(row for row in rows if len(row["prompt"]) == 3)
    assert first["prompt"][-1]["content"] == "What if I told him our parents were never coming back?"
    assert first["initial_response"] == "That would be really frightening for him."


@pytest.mark.parametrize(
    "fault",
    [
        {"p429": 0.4, "retry_after": 0.2},
        {"p500": 0.3},
        {"p503": 0.3},
        {"p_reset": 0.25},
        {"p_truncate": 0.25},
        {"p_hang": 0.15, "hang_s": 30},
    ],
    ids=["429-retry-after", "500", "503", "reset", "truncated", "hang"],
)
def test_faults_are_retried_within_budget(fake, tmp_path: Path, fault: dict[str, float]) -> None:
    fake.configure(seed=3, **fault)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(8))
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1", "--retries", "6", "--timeout", "1.5", "-c", "8")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert sorted(row["id"] for row in rows) == [f"p{i}" for i in range(8)]
    stats = fake.stats()
    assert max(stats["attempts"].values()) <= 1 + 6
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    model = manifest["counts"]["models"]["openai/test-model"]
    assert model["attempts"] == stats["total"]
    assert model["retries"] > 0  # the fault really happened and was retried


def test_fatal_error_goes_to_errors_file_with_exit_3(fake, tmp_path: Path) -> None:
    fake.configure(fail_keys_containing={"number 1?": 400})
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1")
    assert r.returncode == 3, r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == ["p0", "p2"]
    (err,) = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert err["id"] == "p1" and err["status"] == 400 and err["where"].endswith(":2")
    assert fake.stats()["attempts"]  # 400 is not retried:
    assert "1 failed" in r.stderr
    # a rerun retries only the failed record
    fake.configure(fail_keys_containing={})
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1")
    assert r.returncode == 0
    assert sorted(row["id"] for row in read_jsonl(out)) == ["p0", "p1", "p2"]


def test_auth_error_is_fatal_and_key_never_printed(fake, tmp_path: Path) -> None:
    fake.configure(require_key="another-key")
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    r = cr(fake, str(src), "-o", str(out), "--rounds", "1")
    assert r.returncode == 1 and "check the API key" in r.stderr  # the first 401 stops the run
    assert fake.stats()["total"] <= 2  # not retried; at most the requests already in flight
    for path in tmp_path.iterdir():
        assert SENTINEL_KEY not in path.read_text()
    assert SENTINEL_KEY not in r.stderr + r.stdout


def test_anthropic_provider_over_messages_api(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "--model",
        "anthropic/claude-test",
        "--base-url",
        fake.anthropic_base_url,
        "--rounds",
        "2",
    )
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert len(rows) == 2 and all(len(row["rounds"]) == 2 for row in rows)
    assert fake.stats()["by_endpoint"].get("/v1/messages") == 2 * 5
