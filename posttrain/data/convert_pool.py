"""Convert a large .jsonl file on every core, with the output and the errors of one process.

Conversion is Python work on each record (parse, check every field, rebuild,
serialise), about 20 µs a record, so one core takes some 20 s over a million
alpaca records. Here the parent cuts the file into blocks of whole lines,
worker processes convert the blocks, and the parent writes their text in the
file's order, holding a few blocks at a time, so memory stays flat. A worker
numbers its block's lines from 1 and the parent adds the lines before it, so
an error names the same FILE:LINE, and the first bad record of the file is
the one reported. The write is atomic, as in one process. Only .jsonl into
.jsonl takes this path: a JSON array cannot be cut at a line break, and
parquet is written in batches by pyarrow.
"""

from __future__ import annotations

import codecs
import collections
import io
import itertools
import json
import logging
import multiprocessing
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator

from posttrain.data.formats import data_files, detect_format, fields, get_format, row_records, target_row
from posttrain.data.io import atomic_path, file_kind, jsonl_rows, read_rows, with_progress
from posttrain.errors import DataError, PosttrainError

MIN_BYTES = 64 << 20  # below this, starting the workers costs more than they save
BLOCK_BYTES = 4 << 20
MAX_WORKERS = 8


def workers_for(in_path, out_path, requested: int | None) -> int:
    """How many processes convert `in_path` into `out_path`: `requested`, or every core for a large .jsonl file
    into .jsonl (1 otherwise)."""
    if requested is not None and requested < 1:
        raise PosttrainError(f"--workers: expected 1 or more, got {requested}")
    if requested == 1:
        return 1
    try:
        files = data_files(in_path)
        parallel = Path(out_path).suffix.lower() in (".jsonl", ".ndjson") and \
            all(file_kind(f) == "jsonl" for f in files)
    except PosttrainError:
        return 1  # the one-process path says what is wrong with the input
    if requested is not None:
        if not parallel:
            raise PosttrainError(f"--workers {requested}: only .jsonl files into a .jsonl file are converted in "
                                 "parallel; leave --workers out (or give 1) for this conversion")
        return requested
    if not parallel or sum(os.path.getsize(f) for f in files) < MIN_BYTES:
        return 1
    return min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
               MAX_WORKERS)


def convert(in_path, out_path, from_format: str | None, to_format: str, *, columns, tags, workers: int,
            progress: bool) -> int:
    """posttrain.data.convert.convert's job on `workers` processes; the formats are known (the caller read the
    first record)."""
    files = data_files(in_path)
    from_format = from_format or _detected(files)
    count = 0
    context = multiprocessing.get_context(_start_method())
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_quiet_worker)
    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as out, pool:
        blocks = itertools.chain.from_iterable(
            _converted(pool, workers, file, from_format, to_format, columns, tags) for file in files)
        for text, records in with_progress(blocks, enabled=progress, description=f"converting {in_path}",
                                           size=lambda block: block[1]):
            out.write(text)
            count += records
    return count


def _start_method() -> str:
    """fork where it is safe (Linux, one thread): a worker then needs no import of the caller's script, which
    spawn re-runs and a script without a __main__ guard cannot take; forkserver otherwise."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def _quiet_worker() -> None:
    """A worker's warnings go to the parent, which gives each once (fields.warn), as one process would."""
    logger = logging.getLogger("posttrain")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False


def _detected(files) -> str:
    for file in files:
        for _, row in read_rows(file):
            return detect_format(row)
    raise PosttrainError(f"{files[0]}: no records")  # not reached: the caller read a first record


def _converted(pool, workers: int, file, from_format, to_format, columns, tags) -> Iterator[tuple[str, int]]:
    """(jsonl text, record count) of each block of `file`, in order, with at most 2 blocks a worker in flight."""
    pending: collections.deque = collections.deque()
    lines_before = 0
    blocks = _blocks(file)
    while True:
        while len(pending) < 2 * workers:
            block = next(blocks, None)
            if block is None:
                break
            pending.append(pool.submit(convert_block, str(file), block, from_format, to_format, columns, tags))
        if not pending:
            return
        outcome = pending.popleft().result()
        for (fmt, key), why in outcome["warned"].items():
            fields.warn(fmt, key, why)
        if "error" in outcome or "fatal" in outcome:
            for future in pending:
                future.cancel()
            if "fatal" in outcome:
                raise PosttrainError(outcome["fatal"])
            line, field, expected = outcome["error"]
            raise DataError(file, lines_before + line, field, expected)
        lines_before += outcome["lines"]
        yield outcome["text"], outcome["records"]


def _blocks(path) -> Iterator[bytes]:
    """The file in blocks of about BLOCK_BYTES, each ending at a line break (the last where the file does); a
    line longer than a block is gathered whole, in time linear in its size."""
    with open(path, "rb") as f:
        held: list[bytes] = []
        if f.read(3) != codecs.BOM_UTF8:  # a leading BOM is no data, as one process reads it (jsontext.ENCODING)
            f.seek(0)
        while True:
            data = f.read(BLOCK_BYTES)
            if not data:
                if held:
                    yield b"".join(held)
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                held.append(data)
                continue
            yield b"".join([*held, data[:cut]])
            held = [data[cut:]] if cut < len(data) else []


def convert_block(path: str, block: bytes, from_format: str, to_format: str, columns, tags) -> dict:
    """A worker's job: the block's rows converted, as jsonl text, with its counts of lines and records and the
    fields warned about; or the first error, its line counted from the block's first."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as e:
        line, column = block.count(b"\n", 0, e.start) + 1, e.start - block.rfind(b"\n", 0, e.start)
        return {"error": (line, "encoding", f"invalid UTF-8 ({e.reason} at byte {column}); expected UTF-8 text"),
                "warned": {}}
    module = get_format(from_format)
    lines = _Lines(io.StringIO(text, newline=None))  # universal newlines, as a file opened for text
    out, records = [], 0
    try:
        for line, row in jsonl_rows(path, lines):
            for record in row_records(module, path, line, row, columns, tags):
                out.append(json.dumps(target_row(to_format, path, line, record), ensure_ascii=False))
                records += 1
    except DataError as e:
        return {"error": (e.line, e.field, e.expected), "warned": fields.warned()}
    except PosttrainError as e:
        return {"fatal": str(e), "warned": fields.warned()}
    return {"text": "".join(text + "\n" for text in out), "records": records, "lines": lines.count,
            "warned": fields.warned()}


class _Lines:
    """The lines of a text stream, counted as they are read (as a file's lines are numbered: universal newlines)."""

    def __init__(self, stream):
        self.stream, self.count = stream, 0

    def __iter__(self):
        for line in self.stream:
            self.count += 1
            yield line

