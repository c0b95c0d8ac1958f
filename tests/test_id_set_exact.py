"""The resume set of ids is exact (caitool/store.py `IdSet`): at 200k ids a 32-bit hash alone would give about
five colliding pairs, each one a record silently skipped as "done" or "duplicate" (benchmarks/RESULTS.md's
memory run uses 200k ids). Membership must compare the ids themselves."""

from __future__ import annotations

from caitool.store import IdSet


def test_two_hundred_thousand_ids_no_false_member_no_lost_id() -> None:
    n = 200_000
    ids = IdSet()
    added = sum(ids.add(f"rec-{i}") for i in range(n))
    assert added == n == len(ids)  # no id refused as a duplicate of another
    # ~9 false members would be expected among 200k absent ids if only the 32-bit hashes were compared
    assert not any(f"other-{i}" in ids for i in range(n))
    assert all(f"rec-{i}" in ids for i in range(0, n, 97))
