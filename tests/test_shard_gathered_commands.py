"""`--shard I/N` on the two commands that gather all their rows before reporting (red-team, eval-labeler):
each shard runs only its share of the model calls; the shards' durable files merged with `caitool merge` are
the unsharded run's, so the unsharded command resumes them without a model call and reports over all items."""

from __future__ import annotations

import json
import math
from pathlib import Path

from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, read_jsonl, run_cli, write_jsonl

GOLD = REPO / "tests" / "data" / "eval" / "gold_paper.jsonl"


def test_eval_labeler_shards_merge_into_the_unsharded_run(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={"A": math.log(0.7), "B": math.log(0.3)}, answer_style="space-paren")
    base = ["eval-labeler", str(GOLD), "--model", "openai/judge", "--base-url", fake.openai_base_url]
    n_items = len(read_jsonl(GOLD))
    whole = tmp_path / "whole.jsonl"
    r = run_cli(*base, "-o", str(whole))
    assert r.returncode == 0, r.stderr
    calls_whole = fake.stats()["total"]

    parts, scored = [], 0
    for i in (1, 2, 3):
        part = tmp_path / f"part{i}.jsonl"
        r = run_cli(*base, "-o", str(part), "--shard", f"{i}/3")
        if r.returncode == 2 and "no gold item falls in shard" in r.stderr:
            continue  # a tiny gold file may leave a shard empty; that is said, not an error in the data
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["scored"] == len(read_jsonl(part))  # the shard's report covers its items only
        scored += report["scored"]
        parts.append(part)
    assert scored == n_items and len(parts) >= 2
    assert fake.stats()["total"] == 2 * calls_whole  # the shards together asked what one run asked

    merged = tmp_path / "merged.jsonl"
    m = run_cli("merge", *map(str, parts), "-o", str(merged))
    assert m.returncode == 0, m.stderr
    before = fake.stats()["total"]
    again = run_cli(*base, "-o", str(merged))
    assert again.returncode == 0, again.stderr
    assert fake.stats()["total"] == before  # resumed: no model call
    assert json.loads(again.stdout)["scored"] == n_items
    key = lambda row: row["id"]  # noqa: E731
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "caitool"} for r in rows), key=key)  # noqa: E731
    assert strip(read_jsonl(merged)) == strip(read_jsonl(whole))


def test_red_team_shards_split_the_requests_and_merge(fake: FakeServer, tmp_path: Path) -> None:
    seeds = write_jsonl(
        tmp_path / "seeds.jsonl",
        [{"id": f"s{i}", "prompt": f"How do I do harmful thing number {i}?"} for i in range(4)],
    )
    base = ["red-team", str(seeds), "-n", "12", "--model", "openai/gen", "--base-url", fake.openai_base_url]
    raws = []
    for i in (1, 2):
        out = tmp_path / f"rt{i}.jsonl"
        r = run_cli(*base, "-o", str(out), "--shard", f"{i}/2")
        assert r.returncode == 0, r.stderr
        raws.append(Path(f"{out}.raw.jsonl"))
    ids = [{row["id"] for row in read_jsonl(raw)} for raw in raws]
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 12
    assert fake.stats()["total"] == 12

    merged = tmp_path / "all.jsonl"
    m = run_cli("merge", *map(str, raws), "-o", f"{merged}.raw.jsonl")
    assert m.returncode == 0, m.stderr
    again = run_cli(*base, "-o", str(merged))
    assert again.returncode == 0, again.stderr
    assert fake.stats()["total"] == 12  # the unsharded run found every generation done
    assert len(read_jsonl(Path(f"{merged}.raw.jsonl"))) == 12


def test_tier_and_shard_flags_reach_red_team_and_eval_labeler() -> None:
    for command in ("red-team", "eval-labeler"):
        r = run_cli(command, "--help")
        assert r.returncode == 0
        for flag in ("--tier", "--shard", "--base-url", "--on-bad-input", "--quiet"):
            assert flag in r.stdout, (command, flag)
