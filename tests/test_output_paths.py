"""Output paths that must not destroy data or crash: aliases of the input, -o and --errors/--rejects
(refused, exit 2, nothing touched); pipes, FIFOs and devices as -o (they just work, with no side files);
a read-only output; a write error that closing the run must not hide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, prompts, run_cli, write_jsonl


def _cr(fake, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return run_cli(
        "critique-revise", *args, "--model", "openai/m", "--base-url", fake.openai_base_url, "--rounds", "1"
    )


def test_output_equal_to_the_input_is_refused_even_with_overwrite(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "same.jsonl", prompts(3))
    before = src.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)
    for target in (src, link):
        r = _cr(fake, str(src), "-o", str(target), "--overwrite")
        assert r.returncode == 2 and "is the same file as the input" in r.stderr, r.stderr
        assert src.read_bytes() == before
    assert fake.stats()["total"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "same.jsonl"]


def test_errors_equal_to_the_input_or_the_output_is_refused(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(4))
    out = tmp_path / "out.jsonl"
    assert _cr(fake, str(src), "-o", str(out), "--limit", "2").returncode == 0
    src_before, out_before = src.read_bytes(), out.read_bytes()
    for errors in (src, out):
        r = _cr(fake, str(src), "-o", str(out), "--errors", str(errors))
        assert r.returncode == 2 and "--errors" in r.stderr and "is the same file as" in r.stderr, r.stderr
    r = _cr(fake, str(src), "-o", str(out), "--on-bad-input", "skip", "--rejects", str(out))
    assert r.returncode == 2 and "--rejects" in r.stderr, r.stderr
    r = _cr(fake, str(src), "-o", str(out), "--on-bad-input", "skip", "--rejects", str(src))
    assert r.returncode == 2 and "--rejects" in r.stderr, r.stderr
    assert src.read_bytes() == src_before and out.read_bytes() == out_before


def test_dev_null_and_a_symlink_to_it_work_without_side_files(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    link = tmp_path / "null.jsonl"
    link.symlink_to(os.devnull)
    for target in (os.devnull, str(link)):
        r = _cr(fake, str(src), "-o", target)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "null.jsonl"]
    assert not Path(os.devnull + ".manifest.json").exists()


def test_dev_stdout_as_a_pipe_and_a_fifo_receive_every_row(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    r = _cr(fake, str(src), "-o", "/dev/stdout")
    assert r.returncode == 0, r.stderr
    assert sorted(row["id"] for row in map(json.loads, r.stdout.splitlines())) == [
        "p0",
        "p1",
        "p2",
    ]
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = _cr(fake, str(src), "-o", str(fifo))
    reader.join(timeout=60)
    assert r.returncode == 0, r.stderr
    assert got and got[0].count(b"\n") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.jsonl", "in.jsonl"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_read_only_output_gives_a_clear_message(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    assert _cr(fake, str(src), "-o", str(out), "--limit", "1").returncode == 0
    out.chmod(0o444)
    r = _cr(fake, str(src), "-o", str(out))
    assert r.returncode == 1 and f"cannot open {out} for writing" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# A run whose output write fails (a file-size limit stands in for a full disk: the kernel refuses the
# write with EFBIG) and whose manifest then cannot be written either: the write error is what is reported.
_FULL_DISK_RUN = """
import resource, signal, sys
from pathlib import Path
from caitool.pipeline import RunSpec, execute
from caitool.runner import Job

out = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
spec = RunSpec(command="t", input="-", output=str(out), settings={}, quiet=True)

def make_process(store):
    async def process(job):
        Path(str(out) + ".manifest.json.tmp").mkdir()  # the manifest's next write will fail too
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        return [{"id": job.id, "text": "x" * 5000}]
    return process

execute(spec, iter([Job("a", "in:1", "a")]), make_process, [])
"""


def test_a_write_error_is_reported_not_masked_by_closing(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    r = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_RUN, str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=cli_env(),
        timeout=60,
    )
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert f"cannot write {out}: File too large" in last, r.stderr
    assert out.read_bytes() == b""  # no part of the record was left behind
