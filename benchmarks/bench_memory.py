"""Peak memory of a data command against input size: a streamed input keeps peak RSS flat.

Runs the same command on a small and a large input (default 2,000 and 200,000 records) against the fake
server with no latency and many requests in flight, under `/usr/bin/time -v` (its "Maximum resident set
size"; `wait4`'s ru_maxrss when /usr/bin/time is missing), and reports the ratio. Target: large / small
<= 1.2.

By default each record costs one request (`critique-revise --rounds 1 --no-critique --response-field
response`: the initial response comes from the input, then one direct revision), so 200k records take
minutes, not an hour; `--full-chain` runs the 3-call chain instead (same code path, three times the calls).

    python benchmarks/bench_memory.py                          # 2k vs 200k, the RESULTS.md figures
    python benchmarks/bench_memory.py --sizes 2000,20000       # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import CLIENT_CPU, REPO, Server, client_env, loadavg, machine, pinned, workdir


def write_input(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            row = {
                "id": f"m{i:07d}",
                "prompt": f"memory benchmark question {i}: how do tides work?",
                "response": f"An initial answer {i} that the model will revise.",
            }
            fh.write(json.dumps(row) + "\n")
    return path


def command(src: Path, out: Path, base_url: str, c: int, full_chain: bool) -> list[str]:
    argv = [
        sys.executable, "-m", "caitool", "critique-revise", str(src), "-o", str(out), "--overwrite",
        "--model", "openai/bench-model", "--base-url", base_url, "--rounds", "1", "--max-tokens", "16",
        "--concurrency", str(c), "--quiet",
    ]  # fmt: skip
    if not full_chain:
        argv += ["--no-critique", "--response-field", "response"]
    return argv


def run(cmd: list[str], env: dict[str, str]) -> dict[str, float | int | str]:
    time_bin = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    full = pinned(cmd, CLIENT_CPU)
    if time_bin:
        full = [time_bin, "-v", *full]
    t0 = time.monotonic()
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    rc = os.waitstatus_to_exitcode(status)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    maxrss_kb = int(m.group(1)) if m else ru.ru_maxrss
    return {
        "rc": rc,
        "wall_s": round(wall, 1),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
        "maxrss_mb": round(maxrss_kb / 1024, 1),
        "source": "/usr/bin/time -v" if m else "wait4 ru_maxrss",
        "stderr_tail": err[-1500:] if rc else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,200000")
    ap.add_argument("-c", "--concurrency", type=int, default=256)
    ap.add_argument("--full-chain", action="store_true", help="3 calls per record instead of 1")
    ap.add_argument("--keep", default=None, help="keep inputs/outputs in this folder")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    info = machine()
    results = []
    with workdir(a.keep) as tmp, Server(latency_ms="0", seed=1) as server:
        for n in sizes:
            src = write_input(tmp / f"in-{n}.jsonl", n)
            out = tmp / f"out-{n}.jsonl"
            server.reset()
            load = loadavg()
            r = run(command(src, out, server.openai_base_url, a.concurrency, a.full_chain), client_env())
            rows = sum(1 for _ in out.open()) if out.exists() else 0
            requests = server.stats(brief=True)["total"]
            r.update(
                records=n,
                rows=rows,
                requests=requests,
                load=load,
                input_mb=round(src.stat().st_size / 2**20, 1),
            )
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            src.unlink()
            out.unlink(missing_ok=True)
    base = results[0]["maxrss_mb"]
    flags = "" if a.full_chain else " --no-critique --response-field response"
    print(f"machine: {info['cpus']} × {info['cpu_model']}, Python {info['python']}, {info['date']}")
    print(
        f"command: critique-revise --rounds 1{flags} --concurrency {a.concurrency}, fake server latency 0\n"
    )
    print(
        "| records | input MB | requests | rows written | wall s | client CPU s | peak RSS MB | vs smallest "
        "| measured by |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ratio = float(r["maxrss_mb"]) / float(base)
        print(
            f"| {r['records']:,} | {r['input_mb']} | {r['requests']:,} | {r['rows']:,} | {r['wall_s']} "
            f"| {r['cpu_s']} | {r['maxrss_mb']} | {ratio:.2f}× | {r['source']} |"
        )
    print(f"\n(run from {REPO}: `{shlex.join(sys.argv)}`)")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
