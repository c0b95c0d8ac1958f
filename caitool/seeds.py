"""Deterministic seeds derived from names, so a rerun draws and samples exactly as the first run did."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from the parts (run seed, record id, step, ...), stable across runs and machines."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
