"""Endpoint fleets (`--base-url A,B,C`) against three real fake servers over real HTTP: balance at equal
latency, traffic proportional to capacity at unequal latency, a server killed mid-run (every id once, retries
within budget), and a critique-revise record's requests kept on one server while it is healthy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caitool.cli._common import build_client
from caitool.errors import UsageError
from caitool.providers.base import GenerateParams, Message, current_record
from caitool.providers.fleet import split_base_urls
from caitool.retry import ResilientClient
from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, cli_env, prompts, read_jsonl, run_cli, write_jsonl

SPEC = "openai/fake-model"


@pytest.fixture(scope="module")
def trio() -> Iterator[list[FakeServer]]:
    servers = [FakeServer(), FakeServer(), FakeServer()]
    for s in servers:
        s.start()
    yield servers
    for s in servers:
        s.stop()


def base_urls(servers: list[FakeServer], caps: list[int] | None = None) -> str:
    urls = [s.openai_base_url for s in servers]
    if caps:
        urls = [f"{u}#cap={c}" for u, c in zip(urls, caps, strict=True)]
    return ",".join(urls)


def fleet(servers: list[FakeServer], *, concurrency: int, retries: int = 6) -> ResilientClient:
    client = build_client(
        SPEC,
        base_url=base_urls(servers),
        api_key="k",
        timeout=10,
        retries=retries,
        rpm=None,
        tpm=None,
        concurrency=concurrency,
    )
    assert isinstance(client, ResilientClient)
    return client


def drive(client: ResilientClient, *, workers: int, seconds: float) -> dict[str, dict[str, Any]]:
    """`workers` records, each sending one request after another for `seconds`; the fleet's per-endpoint
    counters afterwards."""

    async def worker(i: int) -> None:
        current_record.set(f"r{i}")
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            # A new record id per request: least-outstanding decides every request (no affinity).
            current_record.set(f"r{i}-{n}")
            await client.chat([Message("user", f"w{i} q{n}")], GenerateParams(max_tokens=4))
            n += 1

    async def main() -> None:
        try:
            await asyncio.gather(*(worker(i) for i in range(workers)))
        finally:
            await client.aclose()

    asyncio.run(main())
    assert client.endpoint_stats is not None
    return client.endpoint_stats()


def requests_by_server(stats: dict[str, dict[str, Any]], servers: list[FakeServer]) -> list[int]:
    by_url = {url.rstrip("/"): s["requests"] for url, s in stats.items()}
    return [by_url[s.openai_base_url.rstrip("/")] for s in servers]


def test_equal_latency_is_balanced_within_ten_percent(trio: list[FakeServer]) -> None:
    for s in trio:
        s.reset(latency_ms=30)
    stats = drive(fleet(trio, concurrency=12), workers=12, seconds=1.5)
    counts = requests_by_server(stats, trio)
    mean = sum(counts) / 3
    assert sum(counts) > 150, counts
    assert all(abs(c - mean) <= 0.10 * mean for c in counts), counts
    assert all(s["errors"] == 0 and s["latency_ms"]["p50"] >= 30 for s in stats.values()), stats


def test_unequal_latency_gets_traffic_in_proportion_to_capacity(trio: list[FakeServer]) -> None:
    # Equal caps, latencies 1 : 2 : 4, every slot kept busy: capacity (cap / latency) is 4 : 2 : 1.
    for s, ms in zip(trio, (40, 80, 160), strict=True):
        s.reset(latency_ms=ms)
    stats = drive(fleet(trio, concurrency=12), workers=12, seconds=2.0)
    counts = requests_by_server(stats, trio)
    total = sum(counts)
    shares = [c / total for c in counts]
    expected = [4 / 7, 2 / 7, 1 / 7]
    assert all(abs(s - e) <= 0.15 * e for s, e in zip(shares, expected, strict=True)), (counts, shares)


def test_caps_are_per_endpoint_and_never_exceeded(trio: list[FakeServer]) -> None:
    for s in trio:
        s.reset(latency_ms=30)
    client = build_client(
        SPEC, base_url=base_urls(trio, [1, 2, 6]), api_key="k", timeout=10, retries=0, rpm=None, tpm=None
    )
    assert client.default_concurrency == 9  # enough records to fill every cap
    drive(client, workers=12, seconds=1.0)
    peaks = [s.stats(brief=True)["max_in_flight"] for s in trio]
    assert peaks == [1, 2, 6], peaks


def test_base_url_list_is_parsed_and_checked() -> None:
    assert split_base_urls("http://a/v1, http://b/v1#cap=4") == [("http://a/v1", None), ("http://b/v1", 4)]
    with pytest.raises(UsageError, match="URL#cap=N"):
        split_base_urls("http://a/v1#cap=0,http://b/v1")
    with pytest.raises(UsageError, match="twice"):
        build_client(
            SPEC, base_url="http://a/v1,http://a/v1", api_key="k", timeout=1, retries=0, rpm=None, tpm=None
        )
    with pytest.raises(UsageError, match="cannot be a fleet"):
        build_client(
            "local/smollm2",
            base_url="http://a/v1,http://b/v1",
            api_key=None,
            timeout=1,
            retries=0,
            rpm=None,
            tpm=None,
        )


def record_of(request: dict[str, Any], n: int) -> list[int]:
    """The records whose prompt a recorded request carries (exactly one for a critique-revise request)."""
    body = request["body"]
    text = json.dumps(body.get("messages") or body.get("prompt"))
    return [i for i in range(n) if f"red-team question number {i}?" in text]


def test_a_critique_revise_record_stays_on_one_server(trio: list[FakeServer], tmp_path: Path) -> None:
    for s in trio:
        s.reset(latency_ms=5, record_bodies=True)
    n, rounds = 24, 2
    src = write_jsonl(tmp_path / "in.jsonl", prompts(n))
    out = tmp_path / "out.jsonl"
    proc = run_cli(
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "-m",
        SPEC,
        "--base-url",
        base_urls(trio),
        "--rounds",
        str(rounds),
        "--max-tokens",
        "8",
        "-c",
        "6",
    )
    assert proc.returncode == 0, proc.stderr
    servers_of: dict[int, set[int]] = {i: set() for i in range(n)}
    requests_of: dict[int, int] = {i: 0 for i in range(n)}
    for k, s in enumerate(trio):
        for body in s.stats()["requests"]:
            found = record_of(body, n)
            assert len(found) == 1, body
            servers_of[found[0]].add(k)
            requests_of[found[0]] += 1
    assert all(len(v) == 1 for v in servers_of.values()), servers_of
    assert set(requests_of.values()) == {1 + 2 * rounds}  # the response, then critique and revision
    assert {k for v in servers_of.values() for k in v} == {0, 1, 2}  # and the records spread over all three
    manifest = json.loads(Path(str(out) + ".manifest.json").read_text())
    endpoints = manifest["counts"]["models"][SPEC]["endpoints"]
    assert sum(e["requests"] for e in endpoints.values()) == n * (1 + 2 * rounds)


def test_a_server_killed_mid_run_loses_and_duplicates_nothing(trio: list[FakeServer], tmp_path: Path) -> None:
    for s in trio:
        s.reset(latency_ms=40)
    n, concurrency, retries = 90, 12, 6
    src = write_jsonl(tmp_path / "in.jsonl", prompts(n))
    out = tmp_path / "out.jsonl"
    argv = [
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "-m",
        SPEC,
        "--base-url",
        base_urls(trio),
        "--rounds",
        "1",
        "--max-tokens",
        "8",
        "-c",
        str(concurrency),
        "--retries",
        str(retries),
    ]
    env = cli_env(CAITOOL_RETRY_BACKOFF_S="0.05")
    proc = subprocess.Popen(
        [sys.executable, "-m", "caitool", *argv],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    victim = trio[1]
    victim_url = victim.openai_base_url
    deadline = time.monotonic() + 60
    while victim.stats(brief=True)["total"] < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.stop()  # mid-run: its requests in flight are cut, new connections refused
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        victim.start()  # the module's other tests get a live server back (on a new port)
    assert proc.returncode == 0, stderr
    ids = [r["id"] for r in read_jsonl(out)]
    assert sorted(ids) == sorted(f"p{i}" for i in range(n))  # every id exactly once
    model = json.loads(Path(str(out) + ".manifest.json").read_text())["counts"]["models"][SPEC]
    assert model["failed_requests"] == 0
    # Only the requests the dead server held, and the few sent to it before it was ejected, were retried:
    # far inside the budget (each request may be retried `retries` times).
    assert 1 <= model["retries"] <= 2 * concurrency, model
    assert model["attempts"] == model["requests"] + model["retries"]
    by_url = {url.rstrip("/"): e for url, e in model["endpoints"].items()}
    dead = by_url.pop(victim_url.rstrip("/"))
    assert dead["ejections"] >= 1 and dead["errors"] >= 1
    alive = list(by_url.values())
    assert all(e["errors"] == 0 for e in alive)
    assert sum(e["requests"] for e in alive) > dead["requests"]


def test_repeated_base_url_is_a_fleet_and_a_rerun_may_change_its_endpoints(
    trio: list[FakeServer], tmp_path: Path
) -> None:
    for s in trio:
        s.reset(latency_ms=2)
    n = 24
    src = write_jsonl(tmp_path / "in.jsonl", prompts(n))
    out = tmp_path / "out.jsonl"

    def run(servers: list[FakeServer], *extra: str) -> Any:
        urls = [arg for s in servers for arg in ("--base-url", s.openai_base_url)]
        return run_cli(
            "critique-revise", str(src), "-o", str(out), "-m", SPEC, *urls,
            "--rounds", "1", "--max-tokens", "8", "-c", "6", *extra,
        )  # fmt: skip

    first = run(trio[:2], "--limit", "12")  # `--base-url A --base-url B`: the same fleet as `A,B`
    assert first.returncode == 0, first.stderr
    assert [s.stats()["total"] > 0 for s in trio] == [True, True, False]
    assert len(read_jsonl(out)) == 12
    # The node behind A is gone and C joins: the rerun resumes the fleet's output instead of refusing it.
    trio[0].reset(latency_ms=2)
    rest = run(trio[1:])
    assert rest.returncode == 0, rest.stderr
    assert trio[0].stats()["total"] == 0 and trio[2].stats()["total"] > 0
    rows = read_jsonl(out)
    assert sorted(r["id"] for r in rows) == sorted(p["id"] for p in prompts(n))
    manifest = json.loads(Path(str(out) + ".manifest.json").read_text())
    assert manifest["settings"]["base_url"] == "fleet"
    # One server's output is not a fleet's: switching between them is still refused, naming the setting.
    single = run(trio[1:2])
    assert single.returncode == 2 and "base_url" in single.stderr, single.stderr
