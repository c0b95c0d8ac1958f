"""mix writes a manifest like every other command and refuses to rewrite its output with other settings or
other inputs unless --overwrite."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import read_jsonl, run_cli, write_jsonl


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    ai = write_jsonl(
        tmp_path / "ai.jsonl",
        [
            {"id": f"a{i}", "prompt": [{"role": "user", "content": f"q{i}"}], "chosen": "c", "rejected": "r"}
            | {"p_chosen": 0.8}
            for i in range(4)
        ],
    )
    human = write_jsonl(
        tmp_path / "human.jsonl",
        [
            {
                "chosen": f"\n\nHuman: h{i}?\n\nAssistant: good",
                "rejected": f"\n\nHuman: h{i}?\n\nAssistant: bad",
            }
            for i in range(4)
        ],
    )
    return ai, human


def test_mix_writes_a_manifest_and_refuses_other_settings(tmp_path: Path) -> None:
    ai, human = _inputs(tmp_path)
    out = tmp_path / "mix.jsonl"
    mix = ["mix", "--ai", str(ai), "--human", str(human), "-o", str(out)]
    assert run_cli(*mix, "--ratio", "1:1").returncode == 0
    manifest = json.loads((tmp_path / "mix.jsonl.manifest.json").read_text())
    assert manifest["command"] == "mix" and manifest["status"] == "complete"
    assert manifest["settings"]["ratio"] == "1:1" and manifest["counts"] == {"done": 8, "ai": 4, "human": 4}
    first = out.read_text()
    r = run_cli(*mix, "--ratio", "1:1")  # the same settings: the same rows again
    assert r.returncode == 0, r.stderr
    assert out.read_text() == first
    r = run_cli(*mix, "--ratio", "2:1")
    assert r.returncode == 2 and 'ratio "1:1" → "2:1"' in r.stderr, r.stderr
    assert out.read_text() == first
    write_jsonl(human, read_jsonl(human)[:2])  # other data under the same name
    r = run_cli(*mix, "--ratio", "1:1")
    assert r.returncode == 2 and "human_sha256" in r.stderr, r.stderr
    assert run_cli(*mix, "--ratio", "2:1", "--overwrite").returncode == 0
    assert len(read_jsonl(out)) == 6  # 4 AI + 2 human
    assert not (tmp_path / "mix.jsonl.lock").exists()


def test_mix_output_equal_to_an_input_is_refused(tmp_path: Path) -> None:
    ai, human = _inputs(tmp_path)
    before = ai.read_text()
    r = run_cli("mix", "--ai", str(ai), "--human", str(human), "-o", str(ai), "--overwrite")
    assert r.returncode == 2 and "is the same file as --ai" in r.stderr, r.stderr
    assert ai.read_text() == before
