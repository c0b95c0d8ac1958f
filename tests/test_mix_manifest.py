"""mix writes a manifest like every other command and refuses to rewrite its output with other settings or
other inputs unless --overwrite."""

from __future__ import annotations

import inspect
import json
import math
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


def test_human_rows_carry_a_finite_margin_that_the_flag_sets(tmp_path: Path) -> None:
    """A human comparison's label is hard (p_chosen 1.0), but its margin is logit(0.95), not logit(1.0) ≈
    13.8, which would dominate `train-pm --loss margin` next to AI labels' margins of 0-5."""
    from caitool.cli.mix import mix as mix_command
    from caitool.tasks.mix import DEFAULT_HUMAN_MARGIN

    assert math.isclose(DEFAULT_HUMAN_MARGIN, math.log(0.95 / 0.05), abs_tol=1e-4)
    flag_default = inspect.signature(mix_command).parameters["human_margin"].default
    assert flag_default == DEFAULT_HUMAN_MARGIN  # the flag's literal and the library's constant agree
    ai, human = _inputs(tmp_path)
    out = tmp_path / "mix.jsonl"
    mix = ["mix", "--ai", str(ai), "--human", str(human), "-o", str(out)]
    assert run_cli(*mix).returncode == 0
    rows = read_jsonl(out)
    humans = [r for r in rows if r["caitool"].get("label_source") == "human"]
    assert len(humans) == 4
    assert all(r["p_chosen"] == 1.0 and r["margin"] == DEFAULT_HUMAN_MARGIN for r in humans)
    assert "human_margin" not in json.loads((tmp_path / "mix.jsonl.manifest.json").read_text())["settings"]
    r = run_cli(*mix, "--human-margin", "1.5")  # another margin is another setting
    assert r.returncode == 2 and "human_margin" in r.stderr, r.stderr
    assert run_cli(*mix, "--human-margin", "1.5", "--overwrite").returncode == 0
    assert {r["margin"] for r in read_jsonl(out) if r["caitool"].get("label_source") == "human"} == {1.5}
    for bad in ("nan", "-1"):
        r = run_cli(*mix, "--human-margin", bad, "--overwrite")
        assert r.returncode == 2 and "--human-margin" in r.stderr, r.stderr
