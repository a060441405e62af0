"""Convert a data file from one outside format to another, streaming.

Rows go one at a time from the reader through the canonical record to the
writer, so memory stays flat however large the file is; the writer is atomic,
so a bad record anywhere leaves no output file behind.
"""

from __future__ import annotations

from typing import Iterator

from posttrain.data.formats import CANONICAL, get_format, load_records, writer
from posttrain.data.io import with_progress, write_records
from posttrain.errors import DataError, PosttrainError, RecordError


def convert(
    in_path, out_path, from_format: str | None, to_format: str | None = None, *,
    columns: dict | None = None, tags: dict | None = None, progress: bool = True,
) -> int:
    """Write `in_path` (in `from_format`, detected when None) to `out_path` in `to_format`; return the count.

    `to_format` defaults to the canonical format of the records read (openai for conversations).
    """
    target = get_format(to_format) if to_format else None  # fail on a bad name before reading anything
    if target is not None and writer(target) is None:
        raise PosttrainError(f"--to: {to_format} is an input-only format")

    def records() -> Iterator[dict]:
        nonlocal target
        for line, record in load_records(in_path, from_format, columns=columns, tags=tags):
            kind = "conversation" if "messages" in record else "rl_prompt"
            if target is None:
                target = get_format(CANONICAL[kind])
            if target.RECORD != kind:
                raise PosttrainError(f"--to: {to_format} holds {target.RECORD} records; {in_path} holds {kind} records")
            try:
                yield writer(target)(record)
            except RecordError as e:  # the target cannot hold this record (alpaca and tool turns)
                raise DataError(in_path, line, e.field, e.expected) from None

    return write_records(out_path, with_progress(records(), enabled=progress, description=f"converting {in_path}"))
