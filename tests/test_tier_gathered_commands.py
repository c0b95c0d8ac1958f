"""`--tier batch` on the two commands whose durable run is not their -o file's rows (red-team writes its
generations to OUT.raw.jsonl, eval-labeler its per-item scores to -o): the requests go out in batches, the
ledgers sit beside the durable file, and a rerun collects nothing twice."""

from __future__ import annotations

import json
import math
from pathlib import Path

from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, cli_env, read_jsonl, run_cli, write_jsonl

FAST = {"CAITOOL_BATCH_POLL_S": "0.02", "CAITOOL_BATCH_QUIET_S": "0.02"}
GOLD = REPO / "tests" / "data" / "eval" / "gold_paper.jsonl"


def test_red_team_batch_keeps_its_ledger_beside_the_raw_generations(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(batch_delay_s=0.1)
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"id": f"s{i}", "prompt": f"harm {i}?"} for i in range(3)])
    out = tmp_path / "rt.jsonl"
    argv = ["red-team", str(seeds), "-n", "8", "-o", str(out), "--model", "openai/gen",
            "--base-url", fake.openai_base_url, "--tier", "batch"]  # fmt: skip
    r = run_cli(*argv, env=cli_env(**FAST))
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(Path(f"{out}.raw.jsonl"))) == 8
    assert Path(f"{out}.raw.jsonl.batches.jsonl").exists() and not Path(f"{out}.batches.jsonl").exists()
    seen = fake.stats()["batches"]
    assert seen["requests"] == 8 and fake.stats()["by_endpoint"].get("/v1/chat/completions", 0) == 0
    again = run_cli(*argv, env=cli_env(**FAST))
    assert again.returncode == 0, again.stderr
    assert fake.stats()["batches"]["requests"] == 8  # resumed: nothing sent again


def test_eval_labeler_batch_scores_as_the_standard_tier(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(
        answer_logprobs={"A": math.log(0.7), "B": math.log(0.3)},
        answer_style="space-paren",
        batch_delay_s=0.1,
    )
    base = ["eval-labeler", str(GOLD), "--model", "openai/judge", "--base-url", fake.openai_base_url]
    live = run_cli(*base, "-o", str(tmp_path / "live.jsonl"))
    batch = run_cli(*base, "-o", str(tmp_path / "batch.jsonl"), "--tier", "batch", env=cli_env(**FAST))
    assert live.returncode == 0 and batch.returncode == 0, live.stderr + batch.stderr
    assert fake.stats()["batches"]["requests"] > 0
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k != "caitool"} for r in rows), key=str)  # noqa: E731
    assert strip(read_jsonl(tmp_path / "batch.jsonl")) == strip(read_jsonl(tmp_path / "live.jsonl"))
    assert json.loads(batch.stdout)["accuracy"] == json.loads(live.stdout)["accuracy"]
