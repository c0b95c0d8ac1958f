"""No user loses a half-finished run to a refactor: the resume fingerprint of every data command, with fixed
flags and input, is pinned here as a literal (taken before the record-task seam of issue #12), and an output
written by that earlier version resumes without --overwrite.

The fingerprint is sha256 over the command and its settings; a rerun whose fingerprint differs is refused
(exit 2) unless --overwrite, so any change to a settings key, value or spelling strands every user's
half-finished output. The commands run through the real CLI against the fake server, which they reach through
OPENAI_BASE_URL rather than --base-url: the server's port changes per session, and --base-url is a setting.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest

from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, cli_env, read_jsonl, run_cli, write_jsonl

PREVIOUS = REPO / "tests" / "data" / "previous_version"

PROMPTS = [{"id": f"p{i}", "prompt": f"golden question {i}?"} for i in range(3)]
PAIRS = [
    {"id": f"q{i}", "prompt": f"golden question {i}?", "response_a": f"ALPHA {i}", "response_b": f"BRAVO {i}"}
    for i in range(3)
]
GIVEN = [{"id": f"p{i}", "response": f"given answer {i}"} for i in range(3)]
HUMAN = [{"chosen": f"\n\nHuman: h{i}?\n\nAssistant: yes", "rejected": f"\n\nHuman: h{i}?\n\nAssistant: no"}
         for i in range(3)]  # fmt: skip
AI_ROWS = [
    {"id": f"a{i}", "prompt": [{"role": "user", "content": f"q{i}"}], "chosen": [], "rejected": [],
     "p_chosen": 0.7}
    for i in range(3)
]  # fmt: skip

# name -> argv after the command's input/output (IN: the input file, OUT: the output file).
COMMANDS: dict[str, list[str]] = {
    "critique-revise": ["critique-revise", "IN", "-o", "OUT", "--model", "openai/m", "--rounds", "2",
                        "--max-tokens", "16", "--seed", "3"],
    "critique-revise-sft": ["critique-revise", "IN", "-o", "OUT", "--model", "openai/m", "--rounds", "1",
                            "--format", "sft", "--keep-rounds", "--no-critique", "--temperature", "0.5"],
    "sample-pairs": ["sample-pairs", "IN", "-o", "OUT", "--model", "openai/m", "-k", "3",
                     "--max-tokens", "16", "--seed", "3"],
    "label-pairs": ["label-pairs", "PAIRS", "-o", "OUT", "--model", "openai/m", "--fewshot", "0",
                    "--both-orders", "--seed", "3"],
    "label-pairs-policy": ["label-pairs", "IN", "-o", "OUT", "--model", "openai/m", "--policy", "openai/pol",
                           "--max-tokens", "16", "--ensemble", "2", "--format", "openrlhf",
                           "--clamp", "0.2,0.8", "--prompt-format", "chat", "--fewshot", "1", "--reask", "1"],
    "compare": ["compare", "IN", "-o", "OUT", "--model", "openai/judge", "--models", "tuned=openai/tuned",
                "--responses", "base=GIVEN", "--one-order", "--max-tokens", "16"],
    "mix": ["mix", "--ai", "AI", "--human", "HUMAN", "-o", "OUT", "--ratio", "1:1", "--seed", "3"],
}  # fmt: skip

# Taken from the code before the issue-#12 refactor (commit 752e19e); they must never change.
GOLDEN: dict[str, str] = {
    "compare": "59e78777ad2808034eb9",
    "critique-revise": "4f520db8c6ace6ea74fe",
    "critique-revise-sft": "7fee9961fe582d4832f5",
    "label-pairs": "9939fa57c8e6794678da",
    "label-pairs-policy": "8cd2a7cf15431e8ca7cf",
    "mix": "beceb3a74802d8ba235f",
    "sample-pairs": "6a5aacd3350fe02c19a8",
}


def _inputs(tmp: Path) -> dict[str, str]:
    return {
        "IN": str(write_jsonl(tmp / "prompts.jsonl", PROMPTS)),
        "PAIRS": str(write_jsonl(tmp / "pairs.jsonl", PAIRS)),
        "GIVEN": str(write_jsonl(tmp / "given.jsonl", GIVEN)),
        "AI": str(write_jsonl(tmp / "ai.jsonl", AI_ROWS)),
        "HUMAN": str(write_jsonl(tmp / "human.jsonl", HUMAN)),
        "OUT": str(tmp / "out.jsonl"),
    }


def _argv(name: str, paths: dict[str, str]) -> list[str]:
    out = []
    for arg in COMMANDS[name]:
        head, eq, tail = arg.partition("=")
        out.append(f"{head}={paths[tail]}" if eq and tail in paths else paths.get(arg, arg))
    return out


def _run(fake: FakeServer, name: str, tmp: Path) -> dict[str, object]:
    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    paths = _inputs(tmp)
    r = run_cli(*_argv(name, paths), env=cli_env(OPENAI_BASE_URL=fake.openai_base_url))
    assert r.returncode == 0, r.stderr
    manifest: dict[str, object] = json.loads(Path(paths["OUT"] + ".manifest.json").read_text())
    return manifest


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_fingerprint_is_unchanged(fake: FakeServer, tmp_path: Path, name: str) -> None:
    manifest = _run(fake, name, tmp_path)
    settings = manifest["settings"]
    assert isinstance(settings, dict)
    # The manifest's fingerprint is still sha256 over {"command", **settings}, the rule resume relies on ...
    blob = json.dumps({"command": manifest["command"], **settings}, sort_keys=True, default=str)
    assert manifest["fingerprint"] == hashlib.sha256(blob.encode()).hexdigest()[:20]
    # ... and its value is the one the previous version wrote.
    assert manifest["fingerprint"] == GOLDEN[name], json.dumps(settings, sort_keys=True)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_of_the_previous_version_resumes(fake: FakeServer, tmp_path: Path, name: str) -> None:
    """tests/data/previous_version/NAME holds the files the earlier version wrote for COMMANDS[NAME] with
    --limit 2 (mix: the whole run), without the done file that the last release (ffd997e) did not write.
    The same command now finishes the run without --overwrite, keeping every row already written, byte for
    byte."""
    for f in (PREVIOUS / name).iterdir():
        shutil.copy(f, tmp_path / f.name)
    before = (tmp_path / "out.jsonl").read_bytes()
    manifest = _run(fake, name, tmp_path)
    after = (tmp_path / "out.jsonl").read_bytes()
    assert manifest["fingerprint"] == GOLDEN[name]
    if name == "mix":  # written whole: a rerun over the same inputs rewrites the same rows (from new paths)
        assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [
            json.loads(line)["id"] for line in before.decode().splitlines()
        ]
        return
    assert after.startswith(before) and len(after) > len(before)
    assert len({json.dumps(r, sort_keys=True) for r in read_jsonl(tmp_path / "out.jsonl")}) == len(
        read_jsonl(tmp_path / "out.jsonl")
    )
