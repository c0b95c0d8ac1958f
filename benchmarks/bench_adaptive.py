"""Adaptive concurrency (AIMD, caitool/retry.py `AdaptiveConcurrency`) against a rate limit it is not told.

The fake server enforces `--rpm LIMIT` (a token bucket with one second of burst; a 429 carries only
Retry-After, no x-ratelimit-* headers), with `--latency-ms` per answer. caitool runs critique-revise
(`--rounds 1`: three requests per record) at `--concurrency 256`, far above what the limit allows
(LIMIT/60 x latency requests in flight), with no `--rpm`. Measured on the server: the answered rate over the
run's request phase against the limit (target >= 90 %) and 429s as a share of all requests (target <= 2 %).

    python benchmarks/bench_adaptive.py                    # 12,000 rpm, 100 ms, 3,000 records (~45 s)
    python benchmarks/bench_adaptive.py --rpm 6000 --records 1500 --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import CLIENT_CPU, REPO, Server, client_env, loadavg, machine, pinned, workdir, write_records


def run(rpm: float, latency_ms: float, records: int, concurrency: int) -> dict[str, Any]:
    with Server(rpm=rpm, latency_ms=str(latency_ms)) as server, workdir() as tmp:
        src = write_records(tmp / "in.jsonl", records)
        cmd = [
            sys.executable, "-m", "caitool", "critique-revise", str(src), "-o", str(tmp / "out.jsonl"),
            "-m", "openai/fake-model", "--base-url", server.openai_base_url, "--rounds", "1",
            "--concurrency", str(concurrency), "--max-tokens", "16", "--retries", "30", "-q",
        ]  # fmt: skip
        first_ok: list[float] = []
        last: dict[str, Any] = {}
        done = threading.Event()

        def poll() -> None:  # the request phase: first answered request to the last one
            while not done.is_set():
                st = server.stats()
                ok = int(st["by_status"].get("200", 0))
                if ok and not first_ok:
                    first_ok.append(time.monotonic())
                    last["first_ok_count"] = ok
                last.update(t=time.monotonic(), stats=st)
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        proc = subprocess.run(
            pinned(cmd, CLIENT_CPU), env=client_env(), cwd=REPO, capture_output=True, text=True
        )
        done.set()
        poller.join()
        st = server.stats()
        if proc.returncode != 0:
            raise SystemExit(f"caitool exited {proc.returncode}: {proc.stderr[-2000:]}")
        ok = int(st["by_status"].get("200", 0))
        limited = int(st["by_status"].get("429", 0))
        # Rate over the request phase, from the poller's clock: answers after the first one seen / time.
        seconds = (last["t"] - first_ok[0]) if first_ok else float("nan")
        rate = (ok - last.get("first_ok_count", 0)) / seconds * 60 if seconds > 0 else float("nan")
        return {
            "rpm_limit": rpm,
            "latency_ms": latency_ms,
            "records": records,
            "concurrency": concurrency,
            "answered": ok,
            "rate_limited_429": limited,
            "requests": st["total"],
            "seconds": round(seconds, 2),
            "achieved_rpm": round(rate, 1),
            "share_of_limit": round(rate / rpm, 4),
            "share_429": round(limited / max(1, st["total"]), 4),
            "max_in_flight": st["max_in_flight"],
            "ideal_in_flight": round(rpm / 60 * latency_ms / 1000, 1),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rpm", type=float, default=12000)
    ap.add_argument("--latency-ms", type=float, default=100)
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--json", help="append the result to this JSONL file")
    args = ap.parse_args()
    result = run(args.rpm, args.latency_ms, args.records, args.concurrency)
    result.update(machine=machine(), loadavg=loadavg())
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    verdict = result["share_of_limit"] >= 0.90 and result["share_429"] <= 0.02
    print(f"target (>= 90 % of the limit, <= 2 % 429s): {'met' if verdict else 'NOT met'}")
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
