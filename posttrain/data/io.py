"""Streaming reads and atomic writes of record files.

Readers yield `(line, row)` pairs so every later error can say FILE:LINE;
for parquet and saved `datasets` directories the number is the 1-based row.
Nothing is loaded whole: JSON arrays are decoded one element at a time, so
memory does not grow with the file. Writers go through a temporary file in
the same directory and rename it into place only when every record was
written, so a failed conversion leaves no output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from posttrain.errors import DataError, PosttrainError

_CHUNK = 1 << 16
_PARQUET_BATCH = 1000
_decoder = json.JSONDecoder()


def file_kind(path: str | os.PathLike) -> str:
    """jsonl, json, parquet, text (a .txt file: a row a line), datasets (a saved datasets dir) or hub (an id)."""
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_info.json").exists() and ((p / "state.json").exists() or (p / "dataset_dict.json").exists()):
            return "datasets"
        if any(p.glob("*.parquet")):
            return "parquet"
        raise PosttrainError(f"{p}: a directory, but neither a saved datasets directory nor one holding .parquet files")
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json", ".parquet", ".txt") and not p.exists():
        raise PosttrainError(f"{p}: no such file")
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".txt":
        return "text"
    if not p.exists() and "/" in str(path) and not suffix and not str(path).startswith((".", "/")):
        return "hub"
    if not p.exists():
        raise PosttrainError(f"{p}: no such file")
    raise PosttrainError(f"{p}: unknown file type {suffix or '(none)'}; expected .json, .jsonl, .parquet, .txt or a "
                         "directory")


def read_rows(path: str | os.PathLike, *, split: str = "train", on_bad_line=None) -> Iterator[tuple[int, Any]]:
    """Yield (line or row number, row) from a json/jsonl/parquet file, a saved datasets dir or a hub id.

    A bad JSON line raises DataError, or with `on_bad_line` (jsonl only; an array cannot be resynchronised)
    is handed to it and skipped.
    """
    kind = file_kind(path)
    if kind == "jsonl":
        yield from _read_jsonl(Path(path), on_bad_line)
    elif kind == "json":
        yield from _read_json(Path(path))
    elif kind == "parquet":
        yield from _read_parquet(Path(path), split)
    elif kind == "text":
        yield from _read_text(Path(path))
    elif kind == "datasets":
        yield from _read_saved_dataset(Path(path), split)
    else:
        yield from _read_hub(str(path), split)


def _read_text(path: Path) -> Iterator[tuple[int, Any]]:
    """A plain text file as datasets' `text` builder reads it (and LLaMA-Factory with it): a row a non-empty line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, {"text": line.rstrip("\n")}


def _read_jsonl(path: Path, on_bad_line=None) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8") as f:
        yield from jsonl_rows(path, f, on_bad_line)


def jsonl_rows(path, lines: Iterable[str], on_bad_line=None) -> Iterator[tuple[int, Any]]:
    """(line number, row) of each non-blank line of `lines`, a JSON object a line, numbered from 1; a line that
    is not JSON raises DataError naming `path`, or goes to `on_bad_line`."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            error = DataError(path, number, "json", f"invalid JSON ({e.msg} at column {e.colno})")
            if on_bad_line is None:
                raise error from None
            on_bad_line(error)
            continue
        yield number, row


def _read_json(path: Path) -> Iterator[tuple[int, Any]]:
    """A JSON array, decoded element by element; a file of one object per line is read as jsonl."""
    with open(path, encoding="utf-8") as f:
        buf = f.read(_CHUNK)
        line = 1
        pos = _skip_ws(buf, 0)
        while pos == len(buf):
            more = f.read(_CHUNK)
            if not more:
                return  # empty file: no records
            line += buf.count("\n")
            buf, pos = more, _skip_ws(more, 0)
        if buf[pos] != "[":
            f.seek(0)
            yield from _read_jsonl(path)
            return
        line += buf.count("\n", 0, pos)
        pos += 1
        eof = False
        expect_value = True
        while True:
            pos = _skip_ws(buf, pos)
            if pos >= len(buf) - 1 and not eof:
                refill = _refill(f, buf, pos, line)
                eof = refill is None
                if refill:
                    buf, pos, line = refill
                continue
            if pos >= len(buf):
                raise DataError(path, line, "json", "invalid JSON (the array is not closed with ])")
            ch = buf[pos]
            if ch == "]":
                return
            if ch == "," and not expect_value:
                pos += 1
                expect_value = True
                continue
            try:
                value, end = _decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as e:
                # the element may just continue in the next chunk; it is bad only once the file is read
                refill = None if eof else _refill(f, buf, pos, line)
                if refill:
                    buf, pos, line = refill
                    continue
                raise DataError(path, line + buf.count("\n", 0, e.pos), "json", f"invalid JSON ({e.msg})") from None
            if end == len(buf) and not eof:
                # a number may continue in the next chunk: decode again with more text
                refill = _refill(f, buf, pos, line)
                if refill:
                    buf, pos, line = refill
                    continue
                eof = True
            yield line + buf.count("\n", 0, pos), value
            expect_value = False
            line += buf.count("\n", 0, end)
            buf, pos = buf[end:], 0


def _refill(f, buf: str, pos: int, line: int) -> tuple[str, int, int] | None:
    """Drop what was consumed, append the next chunk: (buffer, position, line at its start); None at EOF."""
    more = f.read(_CHUNK)
    if not more:
        return None
    return buf[pos:] + more, 0, line + buf.count("\n", 0, pos)


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_parquet(path: Path, split: str) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    if path.is_dir():
        files = [path / f"{split}.parquet"] if (path / f"{split}.parquet").exists() else sorted(path.glob("*.parquet"))
    else:
        files = [path]
    number = 0
    for file in files:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=_PARQUET_BATCH):
            for row in batch.to_pylist():
                number += 1
                yield number, row


def _read_saved_dataset(path: Path, split: str) -> Iterator[tuple[int, Any]]:
    import datasets

    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise PosttrainError(f"{path}: no split {split!r}; it has {', '.join(data)}")
        data = data[split]
    for number, row in enumerate(data, 1):
        yield number, row


def _read_hub(name: str, split: str) -> Iterator[tuple[int, Any]]:
    import datasets

    try:
        data = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as e:  # offline, unknown id, gated: say which
        raise PosttrainError(f"{name}: not a local file, and loading it as a hub dataset failed: {e}") from None
    for number, row in enumerate(data, 1):
        yield number, row


def with_progress(items: Iterable, *, enabled: bool, description: str, size=None) -> Iterator:
    """`items`, with a records/s bar on stderr while a person watches a terminal; logs and pipes get nothing.
    `size(item)`: the records an item stands for (a block of them), where it is not one."""
    if not enabled or not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    with tqdm(desc=description, unit=" records", file=sys.stderr) as bar:
        for item in items:
            yield item
            bar.update(1 if size is None else size(item))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); the result is an ordinary file, readable as the umask allows
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write one JSON document atomically (manifests, metrics, configs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def write_records(path: str | os.PathLike, records: Iterable[dict], fmt: str | None = None) -> int:
    """Write records to .jsonl, .json (an array) or .parquet, atomically; return how many."""
    fmt = fmt or {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}.get(
        Path(path).suffix.lower()
    )
    if fmt not in ("jsonl", "json", "parquet"):
        raise PosttrainError(f"{path}: cannot tell the output format; use .jsonl, .json or .parquet")
    count = 0
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            count = _write_parquet(tmp, records)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                if fmt == "json":
                    f.write("[\n")
                for record in records:
                    text = json.dumps(record, ensure_ascii=False)
                    if fmt == "json":
                        f.write(("  " if count == 0 else ",\n  ") + text)
                    else:
                        f.write(text + "\n")
                    count += 1
                if fmt == "json":
                    f.write("\n]\n")
    return count


def _parquet_safe(value):
    """Parquet cannot store a struct with no fields: an empty object is written as null (and read back as None)."""
    if isinstance(value, dict):
        return {k: _parquet_safe(v) for k, v in value.items()} if value else None
    if isinstance(value, list):
        return [_parquet_safe(v) for v in value]
    return value


def _write_parquet(path: Path, records: Iterable[dict]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    buffer: list[dict] = []
    count = 0

    def flush():
        nonlocal writer
        # from_pylist would take the columns of the first row only; a struct array takes the union of keys
        table = pa.Table.from_struct_array(pa.array(buffer))
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        else:
            table = table.cast(writer.schema)
        writer.write_table(table)
        buffer.clear()

    try:
        for record in records:
            buffer.append(_parquet_safe(record))
            count += 1
            if len(buffer) >= 10 * _PARQUET_BATCH:
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
