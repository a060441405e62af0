"""Strict, streamed JSON for record files: everything the standard decoder lets through or trips over is a DataError.

Python's json module accepts what a record file must not hold, and fails on other input with exceptions that say
nothing about where; here each is an error naming FILE:LINE:

- a key given twice in one object: json keeps the last value silently, so a field the user set is lost;
- nesting deeper than MAX_DEPTH: the decoder itself raises RecursionError some way past it, and validators and
  writers that walk a record would fail later still, so a record may not be deeper than this;
- invalid UTF-8: files are opened with errors="surrogateescape", so a bad byte becomes a lone surrogate in the
  text, found per line and named with its byte (files stay streamed, never decoded whole up front);
- a lone surrogate escape ("\\ud800"): valid JSON, but no UTF-8 writer can write the string it makes;
- a number of more than 4300 digits, which Python will not turn into an int.

JSON arrays are decoded an element at a time. When an element continues past what has been read, the reader reads
at least as much again as the element holds so far before it decodes it again, so an element of any size is
decoded in time linear in its size (re-reading 64 KiB at a time made a 24 MB element take 17 s), and it never
copies the rest of its buffer per element. Memory is bounded by the largest element, not by the file.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Iterator

from posttrain.errors import DataError

MAX_DEPTH = 100
ENCODING = "utf-8-sig"  # a leading BOM (Excel, Notepad) is not part of the data
_CHUNK = 1 << 16
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE = re.compile("[\ud800-\udfff]")  # a decoded pair is one character; a surrogate left over stood alone
_NUMBER_START = "-0123456789"
_WS = " \t\r\n"  # JSON's whitespace; str.strip() would take more
_NOT_WS = re.compile(r"[^ \t\r\n]")


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


_decoder = json.JSONDecoder(object_pairs_hook=_object)


def open_text(path):
    """`path` opened for reading as text, each byte that is not UTF-8 kept as a lone surrogate for bad_byte()."""
    return open(path, encoding=ENCODING, errors="surrogateescape")


def bad_byte(path, line: int, text: str, start: int = 0, end: int | None = None) -> DataError | None:
    """The error for the first byte of text[start:end] that was not UTF-8 (text read by open_text), or None."""
    found = _BAD_BYTE.search(text, start, len(text) if end is None else end)
    if found is None:
        return None
    index = found.start()
    line_start = text.rfind("\n", 0, index) + 1
    column = len(text[line_start:index].encode("utf-8", "surrogateescape")) + 1
    try:
        text[index:index + 4].encode("utf-8", "surrogateescape").decode("utf-8")
        reason = "invalid byte"
    except UnicodeDecodeError as e:
        reason = e.reason
    return DataError(path, line + text.count("\n", start, index), "encoding",
                     f"invalid UTF-8 ({reason} at byte {column}); expected UTF-8 text")


def _deep(path, line: int) -> DataError:
    return DataError(path, line, "json", f"nested more than {MAX_DEPTH} levels deep; expected a record of fields, "
                     "not a structure nested this far")


def _decode_error(path, line: int, e: Exception, at: str = "") -> DataError:
    """The DataError for what the decoder raised on the text at `line` (not a JSONDecodeError: those say where)."""
    if isinstance(e, _DuplicateKey):
        return DataError(path, line, e.key, "given twice in one object (JSON would keep only the last value); "
                         "expected each key once")
    if isinstance(e, RecursionError):
        return _deep(path, line)
    return DataError(path, line, "json", f"invalid JSON ({e}{at})")


def _inspect(path, line: int, text: str, start: int, end: int, value: Any) -> None:
    """Refuse a decoded value nested deeper than MAX_DEPTH or holding a lone surrogate; a walk of the value is
    needed only when its text has that many brackets or a surrogate escape, which records seldom have."""
    deep = text.count("[", start, end) + text.count("{", start, end) > MAX_DEPTH
    escaped = _SURROGATE_ESCAPE.search(text, start, end) is not None
    if not deep and not escaped:
        return
    stack = [(value, "", 1)]
    while stack:  # a stack, not recursion: the value may be as deep as the decoder allowed
        item, where, level = stack.pop()
        if isinstance(item, (dict, list)):
            if level > MAX_DEPTH:
                raise _deep(path, line)
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in reversed(list(children)):
                field = f"{where}[{key}]" if isinstance(item, list) else f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and escaped and _LONE.search(key):
                    raise _lone(path, line, field)
                stack.append((child, field, level + 1))
        elif isinstance(item, str) and escaped and _LONE.search(item):
            raise _lone(path, line, where or "json")


def _lone(path, line: int, field: str) -> DataError:
    return DataError(path, line, field, "a lone surrogate escape (\\ud800-\\udfff without its pair), which is no "
                     "character; expected text that UTF-8 can hold")


def parse_line(path, number: int, line: str) -> Any:
    """One line of a jsonl file as a value; anything wrong with it is a DataError at PATH:NUMBER."""
    if not line.isascii():
        error = bad_byte(path, number, line)
        if error is not None:
            raise error
    try:
        value = _decoder.decode(line)
    except json.JSONDecodeError as e:
        raise DataError(path, number, "json", f"invalid JSON ({e.msg} at column {e.colno})") from None
    except (_DuplicateKey, RecursionError, ValueError) as e:
        raise _decode_error(path, number, e) from None
    _inspect(path, number, line, 0, len(line), value)
    return value


def jsonl_rows(path, lines: Iterable[str], on_bad_line=None) -> Iterator[tuple[int, Any]]:
    """(line number, row) of each non-blank line of `lines`, a JSON object a line, numbered from 1; a line that
    is not JSON raises DataError naming `path`, or goes to `on_bad_line`."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = parse_line(path, number, line)
        except DataError as error:
            if on_bad_line is None:
                raise
            on_bad_line(error)
            continue
        yield number, row


def read_json(path) -> Iterator[tuple[int, Any]]:
    """A JSON array, decoded element by element; a file of one object per line is read as jsonl."""
    with open_text(path) as f:
        head = f.read(_CHUNK)
        while head and not head.strip(_WS):
            more = f.read(_CHUNK)
            if not more:
                break
            head += more
        if not head.strip(_WS):
            return  # an empty file: no records
        if head.lstrip(_WS)[0] != "[":
            f.seek(0)
            yield from jsonl_rows(path, f)
            return
        yield from _Array(path, f, head).elements()


class _Array:
    """The elements of a JSON array read from a text stream: `buf[pos:]` is what is not decoded yet, and `line` is
    the line number at `buf[mark]` (lines are counted once, as the position moves on)."""

    def __init__(self, path, f, head: str):
        self.path, self.f = path, f
        self.buf, self.pos, self.mark, self.line = head, len(head) - len(head.lstrip(_WS)), 0, 1
        self.eof = False

    def line_at(self, index: int) -> int:
        if index >= self.mark:
            self.line += self.buf.count("\n", self.mark, index)
            self.mark = index
        return self.line - self.buf.count("\n", index, self.mark)

    def fill(self) -> bool:
        """Read at least as much again as is pending (so an element is decoded O(1) times per byte); False at EOF."""
        more = self.f.read(max(_CHUNK, len(self.buf) - self.pos))
        if not more:
            self.eof = True
            return False
        line = self.line_at(self.pos)
        self.buf, self.pos, self.mark, self.line = self.buf[self.pos:] + more, 0, 0, line
        return True

    def skip_ws(self) -> str:
        """The next character that is not whitespace ('' at the end of the file), reading on as needed."""
        while True:
            found = _NOT_WS.search(self.buf, self.pos)
            if found is not None:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if self.eof or not self.fill():
                return ""

    def fail(self, index: int, expected: str) -> DataError:
        return bad_byte(self.path, self.line_at(index), self.buf, index, index + 1) or \
            DataError(self.path, self.line_at(index), "json", f"invalid JSON ({expected})")

    def elements(self) -> Iterator[tuple[int, Any]]:
        self.pos += 1  # past the [
        count, expect_value = 0, True
        while True:
            ch = self.skip_ws()
            if ch == "":
                raise DataError(self.path, self.line_at(self.pos), "json",
                                "invalid JSON (the array is not closed with ])")
            if ch == "]" and (count == 0 or not expect_value):
                self.pos += 1
                self._rest_is_blank()
                return
            if ch == "," and not expect_value:
                self.pos += 1
                expect_value = True
                continue
            if not expect_value or ch in ",]":
                raise self.fail(self.pos, "expected , or ] after an element" if not expect_value else
                                "expected an element after ,")
            value, end = self._decode()
            line = self.line_at(self.pos)
            error = bad_byte(self.path, line, self.buf, self.pos, end)
            if error is not None:  # before _inspect, which would call the byte's surrogate a lone one
                raise error
            _inspect(self.path, line, self.buf, self.pos, end, value)
            self.pos = end
            count, expect_value = count + 1, False
            yield line, value

    def _decode(self) -> tuple[Any, int]:
        """The element at pos and where it ends, read on while it continues past the buffer."""
        while True:
            buf, pos = self.buf, self.pos
            try:
                value, end = _decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as e:
                # cut off by the end of the buffer (inside a string, or just before its end), or really bad
                if not self.eof and (e.msg.startswith("Unterminated string") or e.pos >= len(buf) - 16) \
                        and self.fill():
                    continue
                raise self.fail(e.pos, e.msg) from None
            except (_DuplicateKey, RecursionError, ValueError) as e:
                raise _decode_error(self.path, self.line_at(pos), e) from None
            # a number may go on in the next chunk ("1e" of "1e5"): decode it again with more text
            if end >= len(buf) - 3 and buf[pos] in _NUMBER_START and not self.eof and self.fill():
                continue
            return value, end

    def _rest_is_blank(self) -> None:
        while True:
            rest = self.buf[self.pos:]
            if rest.strip(_WS):
                raise self.fail(self.pos + len(rest) - len(rest.lstrip(_WS)), "extra data after the array's ]")
            self.pos = len(self.buf)  # nothing pending: read on a chunk at a time
            if self.eof or not self.fill():
                return
