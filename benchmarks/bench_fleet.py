"""An endpoint fleet against its physical limit: K fake servers at a fixed latency, C records in flight per
endpoint, one caitool run with `--base-url A,B,...` (issue #14's bar: 4 endpoints at 200 ms and C = 64 each
reach ≥ 90 % of 4 × 320 req/s, with client CPU per request no worse than one endpoint at C = 64).

For each command it runs, against the same servers (all pinned to CPU 1; the client to CPU 0):
- one endpoint at C;
- one endpoint at K × C: the same records in flight as the fleet, so the CPU per request it costs is the
  reference for the fleet's own overhead (CPU per request falls as C grows: more answers per loop wake-up);
- the fleet of K endpoints at K × C, each URL capped at C (`URL#cap=C`).

Reports requests/s over the request phase (server side, summed over the fleet), its fraction of K × C /
latency, how the requests spread over the endpoints, and client CPU ms per request.

    python benchmarks/bench_fleet.py --json benchmarks/results/fleet.jsonl     # the RESULTS.md row
    python benchmarks/bench_fleet.py --endpoints 2 -c 32 --repeat 1            # a quick look

The fleet's K servers share one core: at 1,280 req/s they can become the bottleneck before the client does,
so the table also gives the servers' summed CPU; read a fraction below target with that column in mind.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    REPO,
    Measured,
    Server,
    ServerGroup,
    client_env,
    loadavg,
    machine,
    measure,
    workdir,
    write_records,
)
from bench_throughput import COMMANDS, SERVER_ANSWER_LOGPROBS, median_run


def run_client(
    group: ServerGroup, base_url: str, c: int, n: int, command: str, tmp: Path, python: str
) -> Measured:
    spec = COMMANDS[command]
    src = write_records(tmp / "in.jsonl", n)
    out = tmp / f"out-{command}.jsonl"
    cmd = [python, "-m", "caitool", *spec.argv(src, out, base_url, c)]
    m = measure(command, cmd, group, n * spec.calls_per_record, env=client_env())
    m.extra["by_server"] = group.by_server()
    m.extra["rows"] = sum(1 for _ in out.open()) if out.exists() else 0
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("-c", "--concurrency", type=int, default=64, help="records in flight per endpoint")
    ap.add_argument("--latency", type=int, default=200, help="ms, fixed")
    ap.add_argument("--commands", default="critique-revise,label-pairs")
    ap.add_argument("--seconds", type=float, default=8.0, help="about this long at the limit per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median by req/s is reported")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default=None, help="append every run as a JSON line here")
    a = ap.parse_args()
    info = machine()
    print(f"# machine: {json.dumps(info)}", file=sys.stderr)
    lat_s = a.latency / 1000
    servers = [
        Server(python=a.python, latency_ms=str(a.latency), seed=1, answer_logprobs=SERVER_ANSWER_LOGPROBS)
        for _ in range(a.endpoints)
    ]
    rows: list[dict[str, object]] = []
    jfh = open(a.json, "a") if a.json else None  # noqa: SIM115
    try:
        with workdir() as tmp:
            for command in a.commands.split(","):
                calls = COMMANDS[command].calls_per_record
                total = a.concurrency * a.endpoints
                cells = {
                    "one endpoint": (ServerGroup(servers[:1]), servers[0].openai_base_url, a.concurrency),
                    # the fleet's own cost: the same records in flight on one endpoint (whose limit it exceeds
                    # only if the server keeps up; the CPU per request is what this cell is for)
                    f"one endpoint, C={total}": (ServerGroup(servers[:1]), servers[0].openai_base_url, total),
                    f"fleet of {a.endpoints}": (
                        ServerGroup(servers),
                        ",".join(f"{s.openai_base_url}#cap={a.concurrency}" for s in servers),
                        total,
                    ),
                }
                for who, (group, url, c) in cells.items():
                    limit = c / lat_s
                    # whole waves of C records, about --seconds at the limit (see bench_throughput.py)
                    n = c * max(4, round(a.seconds * limit / calls / c))
                    runs = []
                    for _ in range(a.repeat):
                        load = loadavg()
                        m = run_client(group, url, c, n, command, tmp, a.python)
                        m.extra.update(load=load, who=who, concurrency=c, records=n, limit=limit)
                        runs.append(m)
                        print(
                            f"  {command:16} {who:14} C={c:<4} n={n:<5} rc={m.rc} {m.req_per_s:7.1f} req/s "
                            f"({m.req_per_s / limit:6.1%}) cpu {m.cpu_ms_per_req:.3f} ms/req "
                            f"spread {m.extra['by_server']} load {load}",
                            file=sys.stderr,
                            flush=True,
                        )
                        if m.rc:
                            print(m.stderr_tail, file=sys.stderr)
                        if jfh:
                            jfh.write(json.dumps({"command": command, **m.to_dict()}) + "\n")
                            jfh.flush()
                    best = median_run(runs)
                    spread = best.extra["by_server"]
                    rows.append(
                        {
                            "command": command,
                            "client": who,
                            "C": c,
                            "records": n,
                            "limit": round(limit, 1),
                            "req_per_s": round(best.req_per_s, 1),
                            "fraction": best.req_per_s / limit,
                            "cpu_ms": best.cpu_ms_per_req,
                            "spread": f"{min(spread)}-{max(spread)}" if len(spread) > 1 else "-",
                            "server_cpu_pct": 100 * best.server_cpu_s / max(best.phase_s, 1e-9),
                            "runs": [round(r.req_per_s, 1) for r in runs],
                            "rc": best.rc,
                        }
                    )
    finally:
        for s in servers:
            s.close()
        if jfh:
            jfh.close()
    print(f"machine: {info['cpus']} × {info['cpu_model']}, Python {info['python']}, {info['date']}")
    print(f"latency {a.latency} ms fixed; repeat {a.repeat} (median by req/s)\n")
    print(
        "| command | client | C | records | limit req/s | req/s | % of limit | CPU ms/req "
        "| requests per endpoint (min-max) | servers' CPU | runs req/s |"
    )
    print("|" + " --- |" * 11)
    for r in rows:
        print(
            f"| {r['command']} | {r['client']} | {r['C']} | {r['records']} | {r['limit']} | {r['req_per_s']} "
            f"| {r['fraction']:.1%} | {r['cpu_ms']:.3f} | {r['spread']} | {r['server_cpu_pct']:.0f}% "
            f"| {r['runs']} |"
        )
    print(f"\n(run from {REPO}: `{shlex.join(sys.argv)}`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
