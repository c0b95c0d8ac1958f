"""The shared rate budget (docs/providers.md, caitool/retry.py): a 429 pauses every worker until its
Retry-After has passed; with `--rpm` each 429 lowers the request rate by 30 % and each success brings it
back by one request per minute; `--tpm` makes a request wait until the token bucket holds its estimate.

The pause is checked end to end: the real CLI against a small threaded HTTP server in this file that notes
when each request arrives and answers one request of record 0 with a 429 (`Retry-After: 1`, seconds only)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from caitool.retry import RateLimiter
from caitool.testing.fake_server import FakeServer
from tests.conftest import prompts, run_cli, write_jsonl


def test_a_429_lowers_rpm_by_30_percent_once_per_second_and_successes_recover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    lim = RateLimiter(rpm=100)
    lim.on_rate_limited(0.0)
    assert lim.rpm == pytest.approx(70.0)
    for _ in range(30):  # the rest of a burst of requests in flight, answered 429 in the same second
        lim.on_rate_limited(0.0)
    assert lim.rpm == pytest.approx(70.0)  # before: 100 × 0.7^31, a request every few minutes
    clock[0] += 1.0
    lim.on_rate_limited(0.0)
    assert lim.rpm == pytest.approx(49.0)
    lim.on_success()
    assert lim.rpm == pytest.approx(50.0)
    for _ in range(200):
        lim.on_success()
    assert lim.rpm == 100  # back to the target, never above it
    floor = RateLimiter(rpm=1.2)
    floor.on_rate_limited(0.0)
    assert floor.rpm == 1.0  # never below one request per minute


def test_tpm_waits_for_the_token_bucket() -> None:
    async def main() -> tuple[float, float, float]:
        lim = RateLimiter(tpm=6000)  # 100 tokens per second, a full minute's worth to start with
        t0 = time.monotonic()
        await lim.acquire(6000)
        first = time.monotonic() - t0
        await lim.acquire(50)  # the bucket is empty: half a second for 50 tokens
        second = time.monotonic() - t0 - first
        # The answer used 1,000 of the 6,000 estimated tokens: the rest goes back into the bucket.
        lim.record_usage(6000, 1000)
        t1 = time.monotonic()
        await lim.acquire(4000)
        return first, second, time.monotonic() - t1

    first, second, refunded = asyncio.run(main())
    assert first < 0.1
    assert 0.4 <= second < 1.5
    assert refunded < 0.1


def test_a_429_pauses_other_callers_for_retry_after() -> None:
    async def main() -> tuple[float, float]:
        lim = RateLimiter()  # no --rpm/--tpm: only the pause
        t0 = time.monotonic()
        lim.on_rate_limited(0.5)
        await lim.acquire()
        paused = time.monotonic() - t0
        lim.on_rate_limited(None)  # a 429 without Retry-After pauses one second
        t1 = time.monotonic()
        await lim.acquire()
        return paused, time.monotonic() - t1

    paused, default = asyncio.run(main())
    assert 0.45 <= paused < 1.5
    assert 0.95 <= default < 2.0


class _Recorder(BaseHTTPRequestHandler):
    """OpenAI-shaped chat completions after 300 ms; the first request of record 0 gets a 429 at once."""

    arrivals: list[tuple[float, str]]
    lock = threading.Lock()
    rate_limited_once: list[bool]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        now = time.monotonic()
        with self.lock:
            self.arrivals.append((now, text))
            limit = "number 0?" in text and not self.rate_limited_once
            if limit:
                self.rate_limited_once.append(True)
        if limit:
            self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"})
            return
        time.sleep(0.3)
        reply = {"role": "assistant", "content": "A careful answer."}
        usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
        choice = {"index": 0, "message": reply, "finish_reason": "stop"}
        self._send(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [choice],
                "usage": usage,
            },
        )

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"arrivals": [], "rate_limited_once": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_429_pauses_every_worker_until_retry_after(
    recorder: tuple[str, type[_Recorder]], tmp_path: Path
) -> None:
    url, handler = recorder
    src = write_jsonl(tmp_path / "in.jsonl", prompts(8))
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise", str(src), "-o", str(out), "--model", "openai/m", "--base-url", url,
        "--rounds", "1", "--concurrency", "4", "--max-tokens", "16",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 8
    arrivals = sorted(handler.arrivals)
    assert len(arrivals) == 8 * 3 + 1  # three calls per record, plus the one 429
    (t429,) = [t for t, text in arrivals if "number 0?" in text][:1]
    # The other three records' first calls went out with record 0's. Their next calls would come 0.3 s
    # later (the answer's latency, ample time for the client to take in the 429 even on a busy machine);
    # nothing may arrive until the second has passed: not those calls, not record 0's retry.
    during = [round(t - t429, 3) for t, _ in arrivals if t429 + 0.1 < t < t429 + 0.95]
    assert during == [], f"requests sent during the 429 pause, at +{during} s"
    retry = [t for t, text in arrivals if "number 0?" in text][1]
    assert retry - t429 >= 0.95


def test_tpm_holds_back_requests_whose_tokens_the_bucket_lacks(fake: FakeServer, tmp_path: Path) -> None:
    # sample-pairs -k 2 --max-tokens 600: each request is budgeted at a little over 1,200 tokens (2 × 600 plus
    # the prompt's). A 2,350-token bucket holds one such request at a time; the next waits (~1.6 s) until the
    # bucket refills. Without --tpm all three records are in flight together.
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))

    def run(out: str, *extra: str) -> int:
        fake.reset(latency_ms=300, reply_text="Short.")
        r = run_cli(
            "sample-pairs", str(src), "-o", str(tmp_path / out), "--model", "openai/m", "--base-url",
            fake.openai_base_url, "-k", "2", "--max-tokens", "600", "--concurrency", "3", *extra,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return int(fake.stats()["max_in_flight"])

    assert run("free.jsonl") == 3
    assert run("budgeted.jsonl", "--tpm", "2350") == 1
