"""Convert a data file from one outside format to another, streaming.

Rows go one at a time from the reader through the canonical record to the
writer, so memory stays flat however large the file is; the writer is atomic,
so a bad record anywhere leaves no output file behind. A large .jsonl file
into .jsonl is converted on every core (data/convert_pool.py), with the same
output and the same errors.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Iterator

from posttrain.data import convert_pool, parquet
from posttrain.data.formats import CANONICAL, get_format, load_records, record_kind, target_row, writer
from posttrain.data.io import with_progress, write_records
from posttrain.errors import PosttrainError


def convert(
    in_path, out_path, from_format: str | None, to_format: str | None = None, *,
    columns: dict | None = None, tags: dict | None = None, progress: bool = True, workers: int | None = None,
) -> int:
    """Write `in_path` (in `from_format`, detected when None) to `out_path` in `to_format`; return the count.

    `to_format` defaults to the canonical format of the records read (openai for conversations). `workers`: the
    processes that convert (None: every core for a .jsonl file over convert_pool.MIN_BYTES into .jsonl, else 1).
    """
    target = get_format(to_format) if to_format else None  # fail on a bad name before reading anything
    if target is not None and writer(target) is None:
        raise PosttrainError(f"--to: {to_format} is an input-only format")

    workers = convert_pool.workers_for(in_path, out_path, workers)
    if workers > 1:
        with contextlib.closing(load_records(in_path, from_format, columns=columns, tags=tags)) as rows:
            first = next(rows, None)
        if first is not None:  # the first record names the formats; a bad one fails here, as it would below
            name = to_format or CANONICAL[record_kind(first[1])]
            return convert_pool.convert(in_path, out_path, from_format, name, columns=columns, tags=tags,
                                        workers=workers, progress=progress)

    # the input lines of the records the writer may still hold (a parquet batch), so an error writing one names it
    lines: collections.deque = collections.deque(maxlen=parquet.WRITE_BATCH + 1)
    written = 0

    def records() -> Iterator[dict]:
        nonlocal written
        name = to_format
        for line, record in load_records(in_path, from_format, columns=columns, tags=tags):
            name = name or CANONICAL[record_kind(record)]
            row = target_row(name, in_path, line, record)
            lines.append(line)
            written += 1
            yield row

    def origin(index: int):
        back = written - index
        return (in_path, lines[-back]) if 0 < back <= len(lines) else None

    return write_records(out_path, with_progress(records(), enabled=progress, description=f"converting {in_path}"),
                         origin=origin)
