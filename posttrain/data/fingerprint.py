"""Fingerprints of what a stage reads: a model directory, one file. A changed input retrains what it feeds.

The pipeline's stage fingerprints, a GRPO stage's built search index and the export card use the same ones.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_WHOLE_FILE_LIMIT = 64 << 20  # bigger weight files are fingerprinted by size and their first/last 4 MiB


def model_fingerprint(path: str) -> str:
    """sha256 over a model directory's files (big weight files by size and their ends); a hub id by name."""
    root = Path(path)
    digest = hashlib.sha256()
    if not root.is_dir():
        digest.update(f"hub:{path}".encode())
        return digest.hexdigest()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        _update_with_file(digest, file)
    return digest.hexdigest()


def file_fingerprint(path: str) -> str:
    """sha256 of one file (a big one by size and its ends); "missing" when it is not there."""
    digest = hashlib.sha256()
    if not Path(path).is_file():
        return "missing"
    _update_with_file(digest, Path(path))
    return digest.hexdigest()


def _update_with_file(digest, file: Path) -> None:
    size = file.stat().st_size
    digest.update(str(size).encode())
    with open(file, "rb") as f:
        if size <= _WHOLE_FILE_LIMIT:
            digest.update(f.read())
        else:
            digest.update(f.read(4 << 20))
            f.seek(-(4 << 20), os.SEEK_END)
            digest.update(f.read())
