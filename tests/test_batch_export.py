"""`--tier batch` with CAITOOL_BATCH_DIR: a run's requests go out as an OpenAI batch file (`caitool batches
export`), something else answers them (here: each request sent to the fake server's live endpoint through the
real openai SDK, written in `vllm run-batch`'s output format), and `caitool batches import` hands the results
back to the waiting run, which ingests them through the same ledger and labels as the standard tier does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import SENTINEL_KEY, cli_env, read_jsonl, run_cli, write_jsonl
from tests.test_batch_faults import ANSWER, N, events, every_id_once, label_args, pairs, start


def answer_like_vllm_run_batch(fake, requests: str) -> str:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key=SENTINEL_KEY, max_retries=0)
    out = []
    for i, raw in enumerate(requests.splitlines()):
        line = json.loads(raw)
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        body = client.chat.completions.create(**line["body"]).model_dump()
        response = {"status_code": 200, "request_id": f"vllm-batch-{i}", "body": body}
        out.append(
            json.dumps(
                {"id": f"vllm-{i}", "custom_id": line["custom_id"], "response": response, "error": None}
            )
        )
    return "\n".join(out) + "\n"


def test_export_run_batch_elsewhere_import_then_the_run_finishes(fake, tmp_path: Path) -> None:
    fake.configure(answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    folder = tmp_path / "batches"
    proc = start(label_args(fake, src, out), CAITOOL_BATCH_DIR=str(folder))
    deadline = time.monotonic() + 60
    while "submitted" not in events(out):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)

    exported = run_cli("batches", "export", str(out))
    assert exported.returncode == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == N
    assert fake.stats()["total"] == 0  # nothing was sent anywhere: the requests wait in the folder

    results = tmp_path / "results.jsonl"
    results.write_text(answer_like_vllm_run_batch(fake, exported.stdout))
    imported = run_cli("batches", "import", str(out), str(results))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().endswith(f": {N} results")

    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "vllm run-batch -i" in stderr  # the run said where its requests are and what to do
    every_id_once(out)
    assert fake.stats()["batches"]["openai"] == 0
    standard = tmp_path / "standard.jsonl"
    r = run_cli(*[a for a in label_args(fake, src, standard) if a not in ("--tier", "batch")])
    assert r.returncode == 0, r.stderr
    want = {row["id"]: row["p_chosen"] for row in read_jsonl(standard)}
    assert {row["id"]: row["p_chosen"] for row in read_jsonl(out)} == pytest.approx(want)


def test_import_of_results_no_batch_waits_for_is_refused(fake, tmp_path: Path) -> None:
    fake.configure(answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    r = run_cli(*label_args(fake, src, out), env=cli_env(CAITOOL_BATCH_POLL_S="0.05"))
    assert r.returncode == 0, r.stderr
    stray = tmp_path / "stray.jsonl"
    stray.write_text(json.dumps({"custom_id": "nobody", "response": None, "error": None}) + "\n")
    imported = run_cli("batches", "import", str(out), str(stray))
    assert imported.returncode == 2 and "waiting for" in imported.stderr
