"""No user loses a half-finished evaluation run to a refactor: the resume fingerprints of `eval-labeler -o`
and `red-team -o` (the two evaluation commands that call a model through the durable runner), with fixed flags
and input, are pinned here as literals taken before the evaluation split of issue #12 (commit 1fed126), and
the files that version wrote resume without --overwrite.

Same rules as tests/test_fingerprints_golden.py: the real CLI against the fake server, reached through
OPENAI_BASE_URL because --base-url is a setting and the server's port changes per session.
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
EVAL = REPO / "tests" / "data" / "eval"
SEEDS = [{"id": f"s{i}", "prompt": f"How would someone get away with mischief number {i}?"} for i in range(4)]

# name -> (argv, the file whose manifest holds the fingerprint). OUT: the output file, SEEDS: the seeds file.
COMMANDS: dict[str, list[str]] = {
    "eval-labeler": ["eval-labeler", str(EVAL / "gold_paper.jsonl"), "-o", "OUT", "--model", "openai/judge",
                     "--seed", "3"],
    "eval-labeler-pairs": ["eval-labeler", str(EVAL / "gold_pairs.jsonl"), "-o", "OUT", "--model",
                           "openai/judge", "--one-order", "--prompt-format", "chat"],
    "eval-labeler-cot": ["eval-labeler", str(EVAL / "gold_paper.jsonl"), "-o", "OUT", "--model",
                         "openai/judge", "--prompt-format", "chat", "--cot", "--cot-samples", "2"],
    "red-team": ["red-team", "SEEDS", "-o", "OUT", "--model", "openai/gen", "--shots", "2", "-n", "4",
                 "--max-tokens", "24", "--seed", "5"],
}  # fmt: skip

# Taken from the code before the evaluation split (commit 1fed126); they must never change.
GOLDEN: dict[str, str] = {
    "eval-labeler": "8fa87178f8adc5a0f0f6",
    "eval-labeler-cot": "13b78b4cda08741ffcd9",
    "eval-labeler-pairs": "ab25c33d61c77f286204",
    "red-team": "686c188ae4f5048a1be2",
}


def _manifest_path(name: str, out: Path) -> Path:
    # red-team's durable file is OUT.raw.jsonl; the kept prompts in OUT are rewritten whole each run.
    return Path(f"{out}.raw.jsonl.manifest.json" if name == "red-team" else f"{out}.manifest.json")


def _run(fake: FakeServer, name: str, tmp: Path) -> dict[str, object]:
    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    seeds = str(write_jsonl(tmp / "seeds.jsonl", SEEDS))
    out = tmp / "out.jsonl"
    argv = [{"OUT": str(out), "SEEDS": seeds}.get(a, a) for a in COMMANDS[name]]
    r = run_cli(*argv, env=cli_env(OPENAI_BASE_URL=fake.openai_base_url))
    assert r.returncode == 0, r.stderr
    manifest: dict[str, object] = json.loads(_manifest_path(name, out).read_text())
    return manifest


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_fingerprint_is_unchanged(fake: FakeServer, tmp_path: Path, name: str) -> None:
    manifest = _run(fake, name, tmp_path)
    settings = manifest["settings"]
    assert isinstance(settings, dict)
    blob = json.dumps({"command": manifest["command"], **settings}, sort_keys=True, default=str)
    assert manifest["fingerprint"] == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert manifest["fingerprint"] == GOLDEN[name], json.dumps(settings, sort_keys=True)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_of_the_previous_version_resumes(fake: FakeServer, tmp_path: Path, name: str) -> None:
    """tests/data/previous_version/NAME holds what the earlier version wrote for COMMANDS[NAME], cut back to
    its first two committed records, as a run killed there leaves them, without the done file that the last
    release (ffd997e) did not write. The same command now finishes the run without --overwrite, keeping every
    row already written, byte for byte."""
    for f in (PREVIOUS / name).iterdir():
        shutil.copy(f, tmp_path / f.name)
    durable = tmp_path / ("out.jsonl.raw.jsonl" if name == "red-team" else "out.jsonl")
    before = durable.read_bytes()
    manifest = _run(fake, name, tmp_path)
    after = durable.read_bytes()
    assert manifest["fingerprint"] == GOLDEN[name]
    assert after.startswith(before) and len(after) > len(before)
    ids = [r["id"] for r in read_jsonl(durable)]
    assert len(ids) == len(set(ids)) == (4 if name == "red-team" else len(read_jsonl(_gold(name))))


def _gold(name: str) -> Path:
    return Path(COMMANDS[name][1])
