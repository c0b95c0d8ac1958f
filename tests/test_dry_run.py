"""critique-revise --dry-run shows every round's requests (it showed round 1 whatever --rounds was), and it
checks the same flags as a real run (an invalid --price passed the dry run)."""

from __future__ import annotations

from pathlib import Path

from caitool.constitution import load_constitution
from caitool.tasks.critique_revise import draw_principles
from tests.conftest import prompts, run_cli, write_jsonl


def test_dry_run_shows_every_round(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    r = run_cli("critique-revise", str(src), "--dry-run", "--rounds", "3", "--seed", "4")
    assert r.returncode == 0, r.stderr
    titles = [line for line in r.stdout.splitlines() if line.startswith("=====")]
    drawn = [p.id for p in draw_principles(load_constitution(None), 4, "p0", 3)]
    expected = ["initial response"] + [
        f"round {k} {step} (principle {pid})"
        for k, pid in enumerate(drawn, 1)
        for step in ("critique", "revision")
    ]
    assert titles == [f"===== p0: {t} [chat] =====" for t in expected]
    # round 2 works on round 1's revision, not on the initial response
    round2 = r.stdout.split("round 2 critique")[1].split("=====\n", 1)[1].split("=====")[0]
    assert "<revision 1>" in round2 and "<initial response>" not in round2


def test_dry_run_rejects_what_the_run_would(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    r = run_cli("critique-revise", str(src), "--dry-run", "--price", "abc")
    assert r.returncode == 2 and "--price 'abc'" in r.stderr
