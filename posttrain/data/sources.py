"""From a stage's `data:` block to records, and to a fingerprint of their content.

A `data:` block is one spec or a list of them; a spec names a file, a
directory, a hub id, or datasets registered in a LLaMA-Factory
dataset_info.json (`dataset: a,b` mixes them). This module flattens all of
that into concrete sources so stages, `validate` and fingerprints agree on
exactly which bytes a stage reads.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from posttrain.data import dataset_info
from posttrain.data.formats import load_conversations


@dataclass
class Source:
    path: str
    format: str | None = None
    columns: dict | None = None
    tags: dict | None = None
    split: str = "train"
    max_samples: int | None = None


def resolve_sources(specs) -> list[Source]:
    if specs is None:
        return []
    if not isinstance(specs, list):
        specs = [specs]
    out = []
    for spec in specs:
        if spec.dataset is not None:
            for entry in dataset_info.resolve(spec.dataset_dir, spec.dataset):
                out.append(Source(str(entry.path), entry.format, entry.columns, entry.tags,
                                  entry.split or spec.split, spec.max_samples))
        else:
            out.append(Source(spec.path, spec.format, spec.columns, spec.tags, spec.split, spec.max_samples))
    return out


def iter_conversations(sources: list[Source]) -> Iterator[tuple[Source, int, dict]]:
    for source in sources:
        rows = load_conversations(source.path, source.format, columns=source.columns, tags=source.tags,
                                  split=source.split)
        for line, record in itertools.islice(rows, source.max_samples):
            yield source, line, record


def load_conversations_from(specs) -> list[dict]:
    return [record for _, _, record in iter_conversations(resolve_sources(specs))]


def content_fingerprint(sources: list[Source]) -> str:
    """sha256 over the bytes of every source (a hub id contributes its name and split)."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(repr((source.format, source.columns, source.tags, source.split, source.max_samples)).encode())
        path = Path(source.path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if not file.exists():
                digest.update(f"hub:{source.path}".encode())
                continue
            digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
