"""Resume of an output that has no done file (`OUT.done.jsonl`): one written by a release from before the
commit log existed, or whose done file was lost. Its complete rows are read back as committed, by the field
that names the input record: `source_id` for the commands that write several rows per input (sample-pairs:
one row per pair; compare: one row per judged pair), `id` for the rest. Reading the wrong field would find
no record done, and the rerun would pay for every record again and write each one twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from caitool.testing.fake_server import FakeServer
from tests.conftest import read_jsonl, run_cli
from tests.test_resume_guarantees import ENV, GENERATORS, Gen, paid

KEYED_BY_SOURCE = [g for g in GENERATORS if g.name in ("sample-pairs", "compare")]


@pytest.mark.parametrize("gen", KEYED_BY_SOURCE, ids=lambda g: g.name)
def test_an_output_without_done_file_resumes_by_its_id_field(
    gen: Gen, fake: FakeServer, tmp_path: Path
) -> None:
    full, part = 6, 2
    out = tmp_path / "out.jsonl"
    fake.configure(**gen.server)
    r = run_cli(*gen.argv(fake, tmp_path, out, part), env=ENV)
    assert r.returncode == 0, r.stderr
    first_rows = read_jsonl(out)
    sources = {row["source_id"] for row in first_rows}
    assert len(sources) == part and len(first_rows) > part  # several rows per input record
    paid_first = paid(fake)
    done_file = out.with_name(out.name + ".done.jsonl")
    done_file.unlink()  # as the last release left it: rows, manifest, no done file

    fake.reset(**gen.server)
    r = run_cli(*gen.argv(fake, tmp_path, out, full), env=ENV)
    assert r.returncode == 0, r.stderr
    assert f"resuming: {part} records already in" in r.stderr
    rows = read_jsonl(out)
    assert rows[: len(first_rows)] == first_rows  # the old rows are kept as they were
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "a record written twice"
    assert len({row["source_id"] for row in rows}) == full
    # Only the records the first run did not finish are paid for: the rerun pays (full - part) / part
    # times what the first run did, as every record costs the same here.
    assert paid(fake) * part == paid_first * (full - part)
    assert done_file.exists()  # rebuilt, so the next resume reads it instead of the rows
