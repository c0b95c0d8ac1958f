"""Shared plumbing for the benchmarks: the fake server as a pinned subprocess, clients measured with wait4.

Measurement method (the same for caitool and for the bare reference client):
- the fake server (`caitool.testing.fake_server`) runs in its own process pinned to one core, the client
  under test in its own process pinned to the other (`taskset`), so neither steals the other's core;
- the *request phase* is timed on the server side: a poller reads `/_stats?brief=1` every `POLL_S` and
  notes when the first request arrived and when the last expected one was answered, so interpreter
  start-up and imports (about 0.5-1 s per process) do not count against a client's request rate;
- client CPU is user+sys of the client process from `wait4`; the CPU spent before its first request
  (start-up, imports) is read from /proc at that moment and reported separately, so `cpu_ms_per_req` is
  the marginal cost of a request and `cpu_ms_per_req_total` includes start-up;
- peak RSS is the client's `ru_maxrss`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.02
SERVER_CPU = "1"
CLIENT_CPU = "0"


def pinned(cmd: Sequence[str], cpu: str | None) -> list[str]:
    if cpu is not None and shutil.which("taskset") and (os.cpu_count() or 1) > int(cpu):
        return ["taskset", "-c", cpu, *cmd]
    return list(cmd)


def proc_cpu_s(pid: int) -> float | None:
    """utime+stime of a live process, from /proc (clock-tick resolution)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import version

    vers = {}
    for pkg in ("caitool", "openai", "anthropic", "httpx", "aiohttp", "tenacity"):
        with contextlib.suppress(Exception):
            vers[pkg] = version(pkg)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "python": sys.version.split()[0],
        "versions": vers,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "pinned": bool(shutil.which("taskset")) and (os.cpu_count() or 1) > 1,
    }


class Server:
    """`python -m caitool.testing.fake_server` in a subprocess, pinned to SERVER_CPU."""

    def __init__(self, python: str = sys.executable, **config: Any) -> None:
        cmd = [python, "-m", "caitool.testing.fake_server", "--port", "0"]
        for name, value in config.items():
            flag = "--" + name.replace("_", "-")
            cmd += [flag, value if isinstance(value, str) else json.dumps(value)]
        self.proc = subprocess.Popen(
            pinned(cmd, SERVER_CPU),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise SystemExit(f"fake server did not start: {line!r}")
        self.url = line.removeprefix("listening on ")

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def stats(self, brief: bool = True) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_stats" + ("?brief=1" if brief else ""), timeout=30) as r:
            return json.loads(r.read())

    def reset(self, **config: Any) -> None:
        self._post("/_reset", config)

    def cpu_s(self) -> float:
        return proc_cpu_s(self.proc.pid) or 0.0

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServerGroup:
    """Several fake servers measured as one (an endpoint fleet): `stats()` sums their counters, so `measure`
    times the request phase across all of them. `by_server()` gives each one's answered requests."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = list(servers)

    @property
    def openai_base_url(self) -> str:
        return ",".join(s.openai_base_url for s in self.servers)

    def stats(self, brief: bool = True) -> dict[str, Any]:
        parts = [s.stats(brief=brief) for s in self.servers]
        by_status: dict[str, int] = {}
        for p in parts:
            for k, v in p["by_status"].items():
                by_status[k] = by_status.get(k, 0) + v
        return {
            "total": sum(p["total"] for p in parts),
            "in_flight": sum(p["in_flight"] for p in parts),
            "max_in_flight": sum(p["max_in_flight"] for p in parts),  # an upper bound: peaks may differ
            "by_status": by_status,
        }

    def by_server(self) -> list[int]:
        return [s.stats(brief=True)["total"] for s in self.servers]

    def reset(self, **config: Any) -> None:
        for s in self.servers:
            s.reset(**config)

    def cpu_s(self) -> float:
        return sum(s.cpu_s() for s in self.servers)


@dataclass
class Measured:
    name: str
    rc: int
    requests: int  # answered by the server during the run (all statuses)
    phase_s: float  # server side: first request arrived -> last expected request answered
    wall_s: float  # process start -> exit
    cpu_s: float  # client user+sys, whole process
    startup_cpu_s: float  # client CPU before its first request reached the server
    maxrss_mb: float
    server_cpu_s: float
    max_in_flight: int
    stderr_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def req_per_s(self) -> float:
        return self.requests / self.phase_s if self.phase_s > 0 else 0.0

    @property
    def cpu_ms_per_req(self) -> float:
        return 1000 * (self.cpu_s - self.startup_cpu_s) / max(1, self.requests)

    @property
    def cpu_ms_per_req_total(self) -> float:
        return 1000 * self.cpu_s / max(1, self.requests)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            req_per_s=round(self.req_per_s, 1),
            cpu_ms_per_req=round(self.cpu_ms_per_req, 3),
            cpu_ms_per_req_total=round(self.cpu_ms_per_req_total, 3),
        )
        return d


def measure(
    name: str,
    cmd: Sequence[str],
    server: Server | ServerGroup,
    expected_requests: int,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
    stdout_path: str | None = None,
) -> Measured:
    """Run `cmd` pinned to CLIENT_CPU against a freshly reset `server`; time the request phase."""
    server.reset()
    s0 = server.cpu_s()
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL  # noqa: SIM115
    err = tempfile.TemporaryFile()  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(pinned(cmd, CLIENT_CPU), stdout=out, stderr=err, env=env, cwd=REPO)
    first: list[float] = []
    startup_cpu: list[float] = []
    last = [0.0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                st = server.stats(brief=True)
            except OSError:
                time.sleep(POLL_S)
                continue
            now = time.monotonic()
            total = st["total"] - st["in_flight"]  # answered
            if st["total"] > 0 and not first:
                first.append(now)
                cpu = proc_cpu_s(proc.pid)
                startup_cpu.append(cpu if cpu is not None else 0.0)
            if total >= expected_requests and not last[0]:
                last[0] = now
            time.sleep(POLL_S)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        raise
    end = time.monotonic()
    done.set()
    poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if stdout_path:
        out.close()  # type: ignore[union-attr]
    err.seek(0)
    tail = err.read()[-2000:].decode(errors="replace")
    err.close()
    st = server.stats(brief=True)
    t_first = first[0] if first else t0
    t_last = last[0] or end
    return Measured(
        name=name,
        rc=proc.returncode,
        requests=st["total"],
        phase_s=round(t_last - t_first, 3),
        wall_s=round(end - t0, 3),
        cpu_s=round(ru.ru_utime + ru.ru_stime, 3),
        startup_cpu_s=round(startup_cpu[0] if startup_cpu else 0.0, 3),
        maxrss_mb=round(ru.ru_maxrss / 1024, 1),
        server_cpu_s=round(server.cpu_s() - s0, 3),
        max_in_flight=st["max_in_flight"],
        stderr_tail=tail if proc.returncode else "",
        extra={"by_status": st["by_status"]},
    )


def write_records(path: Path, n: int, *, prefix: str = "b") -> Path:
    """N records every data command reads: a prompt (critique-revise) and a response pair (label-pairs)."""
    with path.open("w") as fh:
        for i in range(n):
            row = {
                "id": f"{prefix}{i}",
                "prompt": f"benchmark question {i}: why is the sky blue?",
                "response_a": f"Rayleigh scattering, answer {i}.",
                "response_b": f"Because it reflects the sea, answer {i}.",
            }
            fh.write(json.dumps(row) + "\n")
    return path


@contextlib.contextmanager
def workdir(keep: str | None = None) -> Iterator[Path]:
    if keep:
        p = Path(keep)
        p.mkdir(parents=True, exist_ok=True)
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="caitool-bench-") as d:
        yield Path(d)


def client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "CAITOOL_"))}
    env.update(OPENAI_API_KEY="bench-key", ANTHROPIC_API_KEY="bench-key", NO_COLOR="1")
    return env
