"""`--shard I/N` and `caitool merge`: three shards run separately and merged equal one unsharded run (and the
unsharded command resumes the merged output); shards of different settings, missing or unfinished shards are
refused; a record in two shard files is kept once; records that failed in a shard are redone by a rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from caitool.errors import UsageError
from caitool.shards import Shard
from caitool.testing.fake_server import FakeServer
from tests.conftest import prompts, read_jsonl, run_cli, write_jsonl

N = 30


def critique_revise(fake: FakeServer, src: Path, out: Path, *extra: str) -> Any:
    return run_cli(
        "critique-revise", str(src), "-o", str(out), "-m", "openai/fake-model",
        "--base-url", fake.openai_base_url, "--rounds", "1", "--max-tokens", "8", "-c", "8", *extra,
    )  # fmt: skip


def manifest(out: Path) -> dict[str, Any]:
    return dict(json.loads(Path(f"{out}.manifest.json").read_text()))


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", prompts(N))


def run_shards(fake: FakeServer, src: Path, tmp_path: Path, *extra: str) -> list[Path]:
    outs = []
    for i in (1, 2, 3):
        out = tmp_path / f"shard{i}.jsonl"
        proc = critique_revise(fake, src, out, "--shard", f"{i}/3", *extra)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    return outs


def test_three_shards_merged_equal_one_unsharded_run(fake: FakeServer, src: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    assert critique_revise(fake, src, whole).returncode == 0
    shards = run_shards(fake, src, tmp_path)
    ids = [{r["id"] for r in read_jsonl(s)} for s in shards]
    assert all(ids) and sum(len(x) for x in ids) == N and len(set().union(*ids)) == N  # a partition

    merged = tmp_path / "merged.jsonl"
    proc = run_cli("merge", *map(str, shards), "-o", str(merged))
    assert proc.returncode == 0, proc.stderr
    assert by_id(read_jsonl(merged)) == by_id(read_jsonl(whole))
    assert len(read_jsonl(merged)) == N
    m, w = manifest(merged), manifest(whole)
    assert m["fingerprint"] == w["fingerprint"] and m["settings"] == w["settings"]
    assert m["status"] == "complete" and m["counts"]["done"] == N
    assert [e["shard"] for e in m["merged_from"]] == ["1/3", "2/3", "3/3"]

    # The merged output is the unsharded run's: rerunning that command finds every record done.
    before = fake.stats(brief=True)["total"]
    again = critique_revise(fake, src, merged)
    assert again.returncode == 0, again.stderr
    assert fake.stats(brief=True)["total"] == before
    assert len(read_jsonl(merged)) == N


def test_shards_of_different_settings_are_refused_naming_the_keys(
    fake: FakeServer, src: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert critique_revise(fake, src, a, "--shard", "1/2").returncode == 0
    assert critique_revise(fake, src, b, "--shard", "2/2", "--temperature", "0.5").returncode == 0
    proc = run_cli("merge", str(a), str(b), "-o", str(tmp_path / "m.jsonl"))
    assert proc.returncode == 2
    assert "different settings" in proc.stderr and "params" in proc.stderr, proc.stderr
    assert not (tmp_path / "m.jsonl").exists()

    c = tmp_path / "c.jsonl"
    assert critique_revise(fake, src, c, "--shard", "2/3").returncode == 0
    proc = run_cli("merge", str(a), str(c), "-o", str(tmp_path / "m.jsonl"))
    assert proc.returncode == 2 and "shard count (2 vs 3)" in proc.stderr, proc.stderr


def test_missing_shards_are_refused_unless_partial_and_duplicates_kept_once(
    fake: FakeServer, src: Path, tmp_path: Path
) -> None:
    s1, s2, _ = run_shards(fake, src, tmp_path)
    merged = tmp_path / "m.jsonl"
    proc = run_cli("merge", str(s1), str(s2), "-o", str(merged))
    assert proc.returncode == 2 and "missing shards 3/3" in proc.stderr, proc.stderr

    # The same shard twice (a retried array task that wrote elsewhere): each record once.
    copy = tmp_path / "s1-again.jsonl"
    shutil.copy(s1, copy)
    shutil.copy(f"{s1}.manifest.json", f"{copy}.manifest.json")
    proc = run_cli("merge", str(s1), str(copy), str(s2), "-o", str(merged), "--partial")
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(merged)
    expected = {r["id"] for r in read_jsonl(s1) + read_jsonl(s2)}
    assert sorted(r["id"] for r in rows) == sorted(expected)
    m = manifest(merged)
    assert m["status"] == "partial" and m["missing_shards"] == ["3/3"]
    assert m["counts"]["duplicates"] == len(read_jsonl(s1))
    proc = run_cli("merge", str(s1), str(s2), "-o", str(merged), "--partial")
    assert proc.returncode == 2 and "exists" in proc.stderr  # never overwritten unasked


def test_failed_records_are_merged_as_errors_and_a_rerun_redoes_only_them(
    fake: FakeServer, src: Path, tmp_path: Path
) -> None:
    fake.reset(fail_keys_containing={"number 7?": 400})
    shards = []
    for i in (1, 2):
        out = tmp_path / f"s{i}.jsonl"
        proc = critique_revise(fake, src, out, "--shard", f"{i}/2")
        assert proc.returncode in (0, 3), proc.stderr
        shards.append(out)
    merged = tmp_path / "m.jsonl"
    proc = run_cli("merge", *map(str, shards), "-o", str(merged))
    assert proc.returncode == 3, proc.stderr
    errors = read_jsonl(Path(f"{merged}.errors.jsonl"))
    assert [e["id"] for e in errors] == ["p7"]
    assert len(read_jsonl(merged)) == N - 1

    fake.reset(seed=0)
    proc = critique_revise(fake, src, merged)
    assert proc.returncode == 0, proc.stderr
    assert fake.stats(brief=True)["total"] == 3  # p7: response, critique, revision; nothing else paid again
    assert sorted(r["id"] for r in read_jsonl(merged)) == sorted(f"p{i}" for i in range(N))


def test_shard_values_and_the_split() -> None:
    assert str(Shard.parse("2/5")) == "2/5"
    for bad in ("0/3", "4/3", "1", "a/b", "1/0"):
        with pytest.raises(UsageError, match="I/N"):
            Shard.parse(bad)
    ids = [f"id-{i}" for i in range(3000)]
    sizes = [sum(Shard(i, 3).holds(x) for x in ids) for i in (1, 2, 3)]
    assert sum(sizes) == 3000 and min(sizes) > 900  # every id in exactly one shard, and evenly


def test_a_bad_shard_flag_is_a_usage_error(fake: FakeServer, src: Path, tmp_path: Path) -> None:
    proc = critique_revise(fake, src, tmp_path / "o.jsonl", "--shard", "3/2")
    assert proc.returncode == 2 and "--shard '3/2'" in proc.stderr, proc.stderr
