"""File hashing: the sha256 that downloads are verified by, sources.json records and the model card
prints. Its own module so that a stage hashing a file depends on this, not on the download code."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks (archives are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
