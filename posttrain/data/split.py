"""Split a data file into train / validation / test files, reproducibly.

The split must be the same on every machine for a given seed, so stage
fingerprints and evaluation sets stay stable; and it must not load the
records, so it works on files larger than memory. One pass counts the rows,
a seeded permutation of row indices assigns each row its split, and a
second pass routes every row to its file unchanged (whatever its format).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np

from posttrain.data.formats import data_files
from posttrain.data.io import read_rows, write_records
from posttrain.errors import PosttrainError

DEFAULT_NAMES = {2: ("train", "validation"), 3: ("train", "validation", "test")}
_EXTENSIONS = {".jsonl": ".jsonl", ".ndjson": ".jsonl", ".json": ".json", ".parquet": ".parquet"}


def _check(ratios, names) -> tuple[tuple[float, ...], tuple[str, ...]]:
    ratios = tuple(float(r) for r in ratios)
    if not ratios or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        shown = ",".join(f"{r:g}" for r in ratios)
        raise PosttrainError(f"ratios: expected non-negative numbers that sum to 1, got {shown} (sum {sum(ratios):g})")
    names = tuple(names) if names else DEFAULT_NAMES.get(len(ratios))
    if not names or len(names) != len(ratios):
        raise PosttrainError(f"names: expected {len(ratios)} split names, one per ratio, got {names}")
    if len(set(names)) != len(names):
        raise PosttrainError(f"names: expected distinct split names, got {', '.join(names)}")
    return ratios, names


def assignment(n: int, ratios, seed: int) -> np.ndarray:
    """The split index of each of n rows: a seeded permutation cut at the cumulative ratios."""
    order = np.random.default_rng(seed).permutation(n)
    bounds = [0] + [round(c * n) for c in np.cumsum(ratios)[:-1]] + [n]
    split_of = np.empty(n, dtype=np.uint8)
    for k in range(len(ratios)):
        split_of[order[bounds[k]:bounds[k + 1]]] = k
    return split_of


def split(in_path, out_dir, ratios=(0.8, 0.1, 0.1), seed: int = 42, names=None) -> dict[str, int]:
    """Write OUT_DIR/<name><ext> for each split (ext as the input's, jsonl by default); return the counts."""
    ratios, names = _check(ratios, names)
    files = data_files(in_path)
    n = sum(1 for file in files for _ in read_rows(file))
    split_of = assignment(n, ratios, seed)
    ext = _EXTENSIONS.get(Path(in_path).suffix.lower(), ".jsonl")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(names, 0)
    # rows are routed into jsonl files in a scratch dir, then moved or rewritten into place, so a
    # failure leaves no partial split behind
    with tempfile.TemporaryDirectory(prefix=".split.", dir=out_dir) as scratch:
        parts = [Path(scratch) / f"{name}.jsonl" for name in names]
        handles = [open(p, "w", encoding="utf-8") for p in parts]
        try:
            index = 0
            for file in files:
                for _, row in read_rows(file):
                    if index >= n:
                        raise PosttrainError(f"{in_path}: the file changed while it was being split")
                    k = split_of[index]
                    handles[k].write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                    counts[names[k]] += 1
                    index += 1
        finally:
            for handle in handles:
                handle.close()
        for name, part in zip(names, parts):
            target = out_dir / f"{name}{ext}"
            if ext == ".jsonl":
                os.replace(part, target)
            else:
                write_records(target, (row for _, row in read_rows(part)))
    return counts


def split_off(records: list, fraction: float, seed: int) -> tuple[list, list]:
    """A stage's `val_size`: a seeded `fraction` of `records` (at least one) held out for evaluation."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(records) * fraction))
    held = set(order[:n_eval])
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])
