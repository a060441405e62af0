"""Parquet files in and out, pyarrow's errors turned into errors naming the file, the row and the column.

pyarrow raises ArrowInvalid, ArrowTypeError, OSError ("Couldn't deserialize thrift") and others for a file that
is damaged or is not parquet, and for records whose fields do not share one type (a parquet column holds one type;
JSON rows need not). On reading, each becomes a DataError naming the file, the first row of the batch that failed
and the column that fails when read alone; on writing, an `Unwritable` naming the record (its index) and its
field, which io.write_records turns into a DataError at the record's origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from posttrain.errors import DataError, RecordError

BATCH = 1000
WRITE_BATCH = 10 * BATCH


class Unwritable(RecordError):
    """Record `index` (from 0) of a write has a field parquet cannot hold beside the records before it."""

    def __init__(self, index: int, field: str, expected: str):
        self.index = index
        super().__init__(field, expected)


def _errors() -> tuple:
    import pyarrow as pa

    # ArrowInvalid is a ValueError, ArrowTypeError a TypeError; a damaged footer is a plain OSError; a string column
    # of bytes that are not UTF-8 fails as it becomes a Python str; an int past int64 is an OverflowError
    return pa.ArrowException, OSError, ValueError, TypeError, UnicodeDecodeError, OverflowError


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def read(path: Path, split: str) -> Iterator[tuple[int, Any]]:
    """(row number, row) of a parquet file, or of a directory's `{split}.parquet` (else all its .parquet files)."""
    import pyarrow.parquet as pq

    if path.is_dir():
        files = [path / f"{split}.parquet"] if (path / f"{split}.parquet").exists() else sorted(path.glob("*.parquet"))
    else:
        files = [path]
    number = 0
    for file in files:
        try:
            reader = pq.ParquetFile(file)
        except _errors() as e:
            raise DataError(file, None, "parquet", f"not a readable parquet file ({_short(e)})") from None
        batches = reader.iter_batches(batch_size=BATCH)
        first = number
        while True:
            try:  # the rows are yielded outside the try: an error of the caller's is not the file's
                batch = next(batches, None)
                rows = None if batch is None else batch.to_pylist()
            except _errors() as e:
                raise DataError(file, number - first + 1, _failing_column(reader, number - first),
                                f"unreadable parquet data in the rows from here on ({_short(e)})") from None
            if rows is None:
                break
            for row in rows:
                number += 1
                yield number, row


def _failing_column(reader, row: int) -> str:
    """The column that fails alone in the row group holding `row` (from 0), or "parquet" when none does."""
    errors = _errors()
    try:
        group, seen = 0, 0
        while group < reader.num_row_groups - 1 and seen + reader.metadata.row_group(group).num_rows <= row:
            seen += reader.metadata.row_group(group).num_rows
            group += 1
        for name in reader.schema_arrow.names:
            try:
                reader.read_row_group(group, columns=[name]).to_pylist()
            except errors:
                return name
    except errors:
        pass
    return "parquet"


def parquet_safe(value):
    """Parquet cannot store a struct with no fields: an empty object is written as null (and read back as None)."""
    if isinstance(value, dict):
        return {k: parquet_safe(v) for k, v in value.items()} if value else None
    if isinstance(value, list):
        return [parquet_safe(v) for v in value]
    return value


def write(path: Path, records: Iterable[dict]) -> int:
    """Write `records` to a parquet file in batches; a field that breaks its column's type raises Unwritable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    buffer: list[dict] = []
    count = 0

    def flush():
        nonlocal writer
        try:
            # from_pylist would take the columns of the first row only; a struct array takes the union of keys
            table = pa.Table.from_struct_array(pa.array(buffer))
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            else:
                table = table.cast(writer.schema)
            writer.write_table(table)
        except _errors() as e:
            raise _unwritable(buffer, count - len(buffer), None if writer is None else writer.schema, e) from None
        buffer.clear()

    try:
        for record in records:
            buffer.append(parquet_safe(record))
            count += 1
            if len(buffer) >= WRITE_BATCH:
                flush()
        if buffer or writer is None:
            if not buffer:
                pq.write_table(pa.table({}), path)
                return 0
            flush()
    finally:
        if writer is not None:
            writer.close()
    return count


def _unwritable(buffer: list[dict], base: int, schema, error: Exception) -> Unwritable:
    """Which record of `buffer` (record `base` onwards) and which of its fields pyarrow could not write."""
    import pyarrow as pa

    errors = _errors()
    for key in dict.fromkeys(key for record in buffer for key in record):
        values = [record.get(key) for record in buffer]
        if schema is not None and key not in schema.names:
            index = next(i for i, record in enumerate(buffer) if key in record)
            return Unwritable(base + index, key, f"a field none of the first {base} records has; a parquet file's "
                              "columns are fixed by its first batch: write .jsonl or .json, which hold any fields")
        kind = None if schema is None else schema.field(key).type
        try:
            pa.array(values, type=kind)
            continue
        except errors:
            pass
        low, high = 1, len(values)  # the shortest prefix that fails ends with the record at fault
        while low < high:
            middle = (low + high) // 2
            try:
                pa.array(values[:middle], type=kind)
                low = middle + 1
            except errors:
                high = middle
        value = values[low - 1]
        return Unwritable(base + low - 1, key, f"a {type(value).__name__} value that parquet cannot hold in one "
                          f"column with the other records' ({_short(error)}); write .jsonl or .json, which hold "
                          "any JSON")
    return Unwritable(base, "parquet", f"cannot be written as parquet ({_short(error)}); write .jsonl or .json")
