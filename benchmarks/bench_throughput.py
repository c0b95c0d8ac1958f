"""Throughput and CPU per request of caitool's data commands against the physical limit C / latency.

For each latency (fixed 200 ms; jittered 100-500 ms, mean 300 ms) and each concurrency C, runs, in this
order and against the same fake server (one process, pinned to CPU 1):
- the bare reference client (`ref_openai_semaphore.py`: AsyncOpenAI + Semaphore(C)), making the same number
  of requests in chains of the same length;
- each caitool command of COMMANDS (pinned to CPU 0) on N records at `--concurrency C`, writing to a file.

Reports requests/s over the request phase (server side), its fraction of C / mean latency, client CPU ms
per request (after start-up, and including it), peak RSS, and the CPU ratio to the reference.

    python benchmarks/bench_throughput.py --json benchmarks/results/throughput.jsonl   # the RESULTS.md table
    python benchmarks/bench_throughput.py --n 400 -c 64 --latency 200 --repeat 1   # a quick look

Run on a quiet machine: the figures are only as good as the core the client gets (see README.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    REPO,
    Measured,
    Server,
    client_env,
    loadavg,
    machine,
    measure,
    workdir,
    write_records,
)

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Command:
    """How to run one caitool command on N records, how many requests one record costs, and the reference
    client's flags for requests of the same shape (turns, bytes, log-probs, answer length)."""

    calls_per_record: int
    argv: Callable[[Path, Path, str, int], list[str]]  # (input, output, base_url, C)
    ref_flags: str


def _critique_revise(src: Path, out: Path, base_url: str, c: int) -> list[str]:
    return [
        "critique-revise", str(src), "-o", str(out), "--overwrite",
        "--model", "openai/bench-model", "--base-url", base_url,
        "--rounds", "1", "--max-tokens", "32", "--concurrency", str(c), "--quiet",
    ]  # fmt: skip


def _label_pairs(src: Path, out: Path, base_url: str, c: int) -> list[str]:
    return [
        "label-pairs", str(src), "-o", str(out), "--overwrite",
        "--model", "openai/bench-model", "--base-url", base_url, "--concurrency", str(c), "--quiet",
    ]  # fmt: skip


# A new command joins the benchmark with one entry here.
COMMANDS: dict[str, Command] = {
    # initial → critique → revision; with 1 round the critique and revision requests carry the few-shot
    # examples: 22-24 messages, about 4.5 kB
    "critique-revise": Command(
        calls_per_record=3,
        argv=_critique_revise,
        ref_flags="--chain 3 --max-tokens 32 --context-messages 20 --pad-chars 4500",
    ),
    # one (A)/(B) question with the few-shot examples (5 messages, about 1.7 kB), top-20 log-probs, 3 tokens
    "label-pairs": Command(
        calls_per_record=1,
        argv=_label_pairs,
        ref_flags="--chain 1 --max-tokens 3 --context-messages 4 --pad-chars 1500 --context-from 0 "
        "--logprobs 20",
    ),
}

# label-pairs needs an answer it can score: the fake server answers log-prob requests with these.
SERVER_ANSWER_LOGPROBS = {" A": -0.4, " B": -1.1}


def mean_latency_s(latency: str) -> float:
    lo, _, hi = latency.partition("-")
    return (float(lo) + float(hi or lo)) / 2000


def run_one(
    name: str,
    server: Server,
    n: int,
    c: int,
    command: str,
    tmp: Path,
    python: str,
    extra_env: list[str],
    ref_flags: str | None,
) -> Measured:
    spec = COMMANDS[command]
    expected = n * spec.calls_per_record
    if name == "reference":
        cmd = [
            python, str(HERE / "ref_openai_semaphore.py"), "--base-url", server.openai_base_url,
            "--n", str(n), "--concurrency", str(c), *(ref_flags or spec.ref_flags).split(),
        ]  # fmt: skip
        return measure(name, cmd, server, expected, env=client_env())
    src = write_records(tmp / "in.jsonl", n)
    out = tmp / f"out-{name}.jsonl"
    cmd = [python, "-m", "caitool", *spec.argv(src, out, server.openai_base_url, c)]
    env = client_env()
    env.update(kv.split("=", 1) for kv in extra_env)  # type: ignore[misc]
    m = measure(name, cmd, server, expected, env=env)
    m.extra["rows"] = sum(1 for _ in out.open()) if out.exists() else 0
    return m


def median_run(runs: list[Measured]) -> Measured:
    """The run with the median request rate (its own CPU and RSS figures go with it)."""
    ordered = sorted(runs, key=lambda m: m.req_per_s)
    return ordered[len(ordered) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--n", type=int, default=None, help="records per run (default: ~8 s at the limit, a multiple of C)"
    )
    ap.add_argument("-c", "--concurrency", default="64,256")
    ap.add_argument("--latency", default="200,100-500", help="comma-separated: ms fixed, or LO-HI jitter")
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is reported")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default=None, help="append every run as a JSON line here")
    ap.add_argument("--keep", default=None, help="keep inputs/outputs in this folder")
    ap.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for caitool runs"
    )
    ap.add_argument(
        "--ref-flags", default=None, help="replace the reference's shape flags (e.g. '--chain 3')"
    )
    a = ap.parse_args()
    commands = [x for x in a.commands.split(",") if x]
    for name in commands:
        if name not in COMMANDS:
            ap.error(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    info = machine()
    print(f"# machine: {json.dumps(info)}", file=sys.stderr)
    rows: list[dict[str, object]] = []
    jfh = open(a.json, "a") if a.json else None  # noqa: SIM115
    with workdir(a.keep) as tmp:
        for latency in a.latency.split(","):
            lat = mean_latency_s(latency)
            with Server(
                python=a.python, latency_ms=latency, seed=1, answer_logprobs=SERVER_ANSWER_LOGPROBS
            ) as server:
                for c in (int(x) for x in a.concurrency.split(",")):
                    limit = c / lat
                    for name in commands:
                        calls = COMMANDS[name].calls_per_record
                        # about 8 s of requests at the limit, in whole waves of C records: with fixed
                        # latency a last partial wave would take a full chain for a few records, and the
                        # run could not reach C / latency even with a client that costs nothing
                        n = a.n or c * max(4, round(8 * limit / calls / c))
                        results: dict[str, Measured] = {}
                        for who in ("reference", name):
                            runs = []
                            for _ in range(a.repeat):
                                load = loadavg()
                                m = run_one(who, server, n, c, name, tmp, a.python, a.env, a.ref_flags)
                                m.extra.update(load=load, latency=latency, concurrency=c, records=n)
                                runs.append(m)
                                print(
                                    f"  {who:16} lat={latency:>7} C={c:<4} n={n:<5} rc={m.rc} "
                                    f"{m.req_per_s:7.1f} req/s ({m.req_per_s / limit:6.1%}) "
                                    f"cpu {m.cpu_ms_per_req:.3f} ms/req  rss {m.maxrss_mb} MB  "
                                    f"load {load}",
                                    file=sys.stderr,
                                    flush=True,
                                )
                                if m.rc not in (0,):
                                    print(m.stderr_tail, file=sys.stderr)
                                if jfh:
                                    jfh.write(json.dumps({"command": name, **m.to_dict()}) + "\n")
                                    jfh.flush()
                            results[who] = median_run(runs)
                            results[who].extra["req_per_s_all"] = [round(r.req_per_s, 1) for r in runs]
                            results[who].extra["cpu_all"] = [round(r.cpu_ms_per_req, 3) for r in runs]
                        ref, ours = results["reference"], results[name]
                        for who, m in (("bare AsyncOpenAI+Semaphore", ref), (f"caitool {name}", ours)):
                            rows.append(
                                {
                                    "command": name,
                                    "client": who,
                                    "latency": latency,
                                    "C": c,
                                    "records": n,
                                    "requests": m.requests,
                                    "limit": round(limit, 1),
                                    "req_per_s": round(m.req_per_s, 1),
                                    "fraction": m.req_per_s / limit,
                                    "cpu_ms": m.cpu_ms_per_req,
                                    "cpu_ms_total": m.cpu_ms_per_req_total,
                                    "cpu_ratio": m.cpu_ms_per_req / ref.cpu_ms_per_req,
                                    "rss": m.maxrss_mb,
                                    "server_cpu_pct": 100 * m.server_cpu_s / max(m.phase_s, 1e-9),
                                    "max_in_flight": m.max_in_flight,
                                    "runs": m.extra["req_per_s_all"],
                                    "rc": m.rc,
                                }
                            )
    if jfh:
        jfh.close()
    print_table(rows, info, a)
    return 0


def print_table(rows: list[dict[str, object]], info: dict[str, object], a: argparse.Namespace) -> None:
    print(f"machine: {info['cpus']} × {info['cpu_model']}, Python {info['python']}, {info['date']}")
    print(f"versions: {info['versions']}; pinned (server CPU 1, client CPU 0): {info['pinned']}")
    print(f"repeat {a.repeat} (median by req/s)\n")
    print(
        "| command | client | latency ms | C | records | requests | limit req/s | req/s | % of limit "
        "| CPU ms/req | CPU ms/req incl. start-up | CPU vs ref | peak RSS MB | max in flight | server CPU "
        "| runs req/s |"
    )
    print("|" + " --- |" * 16)
    for r in rows:
        print(
            f"| {r['command']} | {r['client']} | {r['latency']} | {r['C']} | {r['records']} | "
            f"{r['requests']} | {r['limit']} | {r['req_per_s']} | {r['fraction']:.1%} | "
            f"{r['cpu_ms']:.3f} | {r['cpu_ms_total']:.3f} | {r['cpu_ratio']:.2f}× | {r['rss']} | "
            f"{r['max_in_flight']} | {r['server_cpu_pct']:.0f}% | {r['runs']} |"
        )
    print(f"\n(run from {REPO}: `{shlex.join(sys.argv)}`)")


if __name__ == "__main__":
    sys.exit(main())
