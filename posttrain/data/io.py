"""Streaming reads and atomic writes of record files.

Readers yield `(line, row)` pairs so every later error can say FILE:LINE;
for parquet and saved `datasets` directories the number is the 1-based row.
Nothing is loaded whole: JSON arrays are decoded one element at a time, so
memory does not grow with the file. Writers go through a temporary file in
the same directory and rename it into place only when every record was
written, so a failed conversion leaves no output behind. Whatever is wrong
with a file is a DataError naming it: JSON's pitfalls (bad UTF-8, duplicate
keys, deep nesting) are found in data/jsontext.py, pyarrow's in
data/parquet.py, and a saved dataset's as it loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from posttrain.data import parquet
from posttrain.data.jsontext import bad_byte, jsonl_rows, open_text, read_json
from posttrain.errors import DataError, PosttrainError


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
        yield from read_json(Path(path))
    elif kind == "parquet":
        yield from parquet.read(Path(path), split)
    elif kind == "text":
        yield from _read_text(Path(path))
    elif kind == "datasets":
        yield from _read_saved_dataset(Path(path), split)
    else:
        yield from _read_hub(str(path), split)


def _read_text(path: Path) -> Iterator[tuple[int, Any]]:
    """A plain text file as datasets' `text` builder reads it (and LLaMA-Factory with it): a row a non-empty line."""
    with open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.isascii() and (error := bad_byte(path, number, line)) is not None:
                raise error
            if line.strip():
                yield number, {"text": line.rstrip("\n")}


def _read_jsonl(path: Path, on_bad_line=None) -> Iterator[tuple[int, Any]]:
    with open_text(path) as f:
        yield from jsonl_rows(path, f, on_bad_line)


def _read_saved_dataset(path: Path, split: str) -> Iterator[tuple[int, Any]]:
    import datasets

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises what its readers raise (JSON, arrow, missing files): say which
        raise DataError(path, None, "dataset", f"not a readable saved dataset ({type(e).__name__}: {e})") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise PosttrainError(f"{path}: no split {split!r}; it has {', '.join(data)}")
        data = data[split]
    try:  # the arrow file is memory-mapped unchecked: a damaged one crashes the process as it is read, not before
        for table in (data.data, data._indices):
            if table is not None:
                table.validate(full=True)
    except Exception as e:
        raise DataError(path, None, "dataset", f"a damaged arrow file ({type(e).__name__}: {e})") from None
    rows, number = iter(data), 0
    while True:
        try:  # rows are yielded outside the try: the caller's errors are not the dataset's
            row = next(rows, _END)
        except Exception as e:
            raise DataError(path, number + 1, "dataset", f"unreadable row ({type(e).__name__}: {e})") from None
        if row is _END:
            return
        number += 1
        yield number, row


_END = object()


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
    """Yield a temporary path beside `path`; rename it into place only on success. A path that cannot be written
    (a directory, a parent that is a file, no permission) is a PosttrainError; on any exception, a Ctrl-C included,
    the temporary file is removed."""
    path = Path(path)
    tmp = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
        except OSError as e:
            raise PosttrainError(f"{path}: cannot write the output there ({e.strerror or e})") from None
        yield Path(tmp)
        try:
            # mkstemp makes the file private (0600); the result is an ordinary file, readable as the umask allows
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, path)
        except OSError as e:
            raise PosttrainError(f"{path}: cannot write the output there ({e.strerror or e})") from None
    except BaseException:
        if tmp is not None:
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


def write_records(path: str | os.PathLike, records: Iterable[dict], fmt: str | None = None, *, origin=None) -> int:
    """Write records to .jsonl, .json (an array) or .parquet, atomically; return how many.

    A record the file cannot hold (a value JSON has no form for, a field whose type breaks a parquet column) is a
    DataError: at `origin(index)`, the (file, line) record `index` (from 0) was read from, when the caller gives
    it and it knows; else at the output path and the record's number."""
    fmt = fmt or {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}.get(
        Path(path).suffix.lower()
    )
    if fmt not in ("jsonl", "json", "parquet"):
        raise PosttrainError(f"{path}: cannot tell the output format; use .jsonl, .json or .parquet")
    count = 0
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            try:
                count = parquet.write(tmp, records)
            except parquet.Unwritable as e:
                raise _unwritable(path, e.index, origin, e.field, e.expected) from None
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                if fmt == "json":
                    f.write("[\n")
                for record in records:
                    try:
                        text = json.dumps(record, ensure_ascii=False)
                        f.write((("  " if count == 0 else ",\n  ") + text) if fmt == "json" else text + "\n")
                    except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as e:
                        raise _unwritable(path, count, origin, _json_field(record), f"a value JSON cannot hold "
                                          f"({type(e).__name__}: {str(e)[:200]})") from None
                    count += 1
                if fmt == "json":
                    f.write("\n]\n")
    return count


def _json_field(record) -> str:
    """The first field of `record` that JSON text in UTF-8 cannot hold."""
    for key, value in record.items() if isinstance(record, dict) else ():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
            return str(key)
    return "record"


def _unwritable(path, index: int, origin, field: str, expected: str) -> DataError:
    where = origin(index) if origin is not None else None
    if where is not None:
        return DataError(where[0], where[1], field, f"{expected} (writing {path})")
    return DataError(path, index + 1, field, f"{expected} (record {index + 1} of the output)")
