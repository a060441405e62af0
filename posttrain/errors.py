"""Errors a user can act on.

Every error raised for bad input derives from `PosttrainError`; the CLI prints
its message (no traceback) and exits with status 2. Data errors name the file,
the line or row, the field and what was expected, so the user can jump
straight to the record.
"""

from __future__ import annotations

import difflib


class PosttrainError(Exception):
    """Bad input or configuration; the CLI exits 2 with this message."""

    exit_code = 2


class ConfigError(PosttrainError):
    """A config file or override that does not validate."""


class RecordError(PosttrainError):
    """A record that does not match its format; `DataError` adds where it is."""

    def __init__(self, field: str, expected: str):
        self.field = field
        self.expected = expected
        super().__init__(f"{field}: {expected}")


class DataError(PosttrainError):
    """A bad record at FILE:LINE (LINE is a row number for parquet and datasets)."""

    def __init__(self, path, line: int | None, field: str, expected: str):
        self.path = str(path)
        self.line = line
        self.field = field
        self.expected = expected
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {field}: {expected}")


def closest(key: str, known, cutoff: float = 0.5) -> str:
    """'; did you mean X?' for the known name closest to `key`, or '' when none is close: every lookup's hint."""
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=cutoff)
    return f"; did you mean {match[0]!r}?" if match else ""


def cut(value, limit: int = 200) -> str:
    """A value's text for an error message, cut to `limit` characters: a value quoted in a message can be any size."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
