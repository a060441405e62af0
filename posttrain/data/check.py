"""The data doctor: everything wrong with a data file, before training starts.

Training on bad data fails late or, worse, silently: a record out of role
order, an empty answer, the same record twice, test records leaking into
training, conversations the max length cuts off. `check` reads the whole file
once, keeps going after each bad record, and reports every problem at its
FILE:LINE, plus the statistics that explain the rest (token lengths).
It checks a record type (what a stage reads: the stage table, posttrain/stages/, says
which); a new record type plugs in by adding a checker to `_RECORD_CHECKS`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from posttrain.data.chat import token_counts, token_lengths
from posttrain.data.formats import data_files, detect_format, get_format
from posttrain.data.io import read_rows, with_progress
from posttrain.errors import DataError, PosttrainError, RecordError
from posttrain.models.loading import load_tokenizer

DEFAULT_MAX_LENGTH = 1024


@dataclass
class Finding:
    level: str  # error | warning | info
    line: int | None
    message: str
    kind: str = ""  # json, schema, format, duplicate, overlap, length, ...
    path: str | None = None


@dataclass
class CheckReport:
    path: str
    stage: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def count(self, level: str) -> int:
        return sum(f.level == level for f in self.findings)

    def to_text(self, max_findings: int = 50) -> str:
        lines = [f"{f.path or self.path}:{f.line if f.line is not None else '-'}: {f.level}: {f.message}"
                 for f in self.findings[:max_findings]]
        if len(self.findings) > max_findings:
            lines.append(f"... and {len(self.findings) - max_findings} more findings")
        s = self.stats
        lines.append(f"{self.path}: {s.get('records', 0)} records ({s.get('valid', 0)} valid), "
                     f"{self.count('error')} errors, {self.count('warning')} warnings")
        for key, value in s.items():
            if key not in ("records", "valid"):
                lines.append(f"  {key}: {json.dumps(value) if isinstance(value, dict) else value}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def _rows(path) -> Iterator[tuple[int | None, object, Finding | None]]:
    """(line, row, None) or (line, None, finding), going on past bad JSON lines where the format allows."""
    for file in data_files(path):
        where = str(file) if str(file) != str(path) else None
        bad: list[DataError] = []
        try:
            for number, row in read_rows(file, on_bad_line=bad.append):
                yield from _bad_lines(bad, where)
                yield number, row, None
            yield from _bad_lines(bad, where)
        except DataError as e:  # a broken JSON array cannot be resynchronised: the rest of the file is lost
            yield e.line, None, Finding("error", e.line, f"{e.field}: {e.expected}; the rest of the file was "
                                        "not read", "json", where)


def _bad_lines(bad: list, where) -> Iterator[tuple[int | None, object, Finding | None]]:
    while bad:
        e = bad.pop(0)
        yield e.line, None, Finding("error", e.line, f"{e.field}: {e.expected}", "json", where)


def _records(path, fmt, columns, tags, record_type) -> Iterator[tuple[int | None, dict | None, Finding | None]]:
    module = get_format(fmt) if fmt else None
    if module is not None and module.RECORD != record_type:
        raise PosttrainError(f"format: {fmt} makes {module.RECORD} records; this stage reads {record_type} records")
    for line, row, finding in _rows(path):
        if finding:
            yield line, None, finding
            continue
        if module is None:
            try:
                name = detect_format(row)
            except PosttrainError as e:
                yield line, None, Finding("error", line, str(e), "format")
                continue
            module = get_format(name)
        try:
            yield line, module.to_record(row, columns, tags), None
        except RecordError as e:
            yield line, None, Finding("error", line, f"{e.field}: {e.expected}", "schema")


def _digest(record: dict) -> bytes:
    return hashlib.blake2b(json.dumps(record, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).digest()


def _conversation_checks(record: dict) -> list[tuple[str, str, str]]:
    messages = record["messages"]
    if messages[0]["role"] == "system" and not messages[0]["content"].strip():
        return [("warning", "messages[0].content: empty system message", "empty")]
    return []


_RECORD_CHECKS: dict[str, Callable[[dict], list[tuple[str, str, str]]]] = {
    "conversation": _conversation_checks,
    "rl_prompt": lambda record: [],  # validate_rl_prompt has said everything there is to say
    "steps": lambda record: [],  # validate_steps has said everything there is to say
    "preference": lambda record: [],  # validate_preference has said everything there is to say
    "text": lambda record: [],  # validate_text has said everything there is to say
    "unpaired_preference": lambda record: [],  # validate_unpaired_preference has said it all
}


def check(
    path, *, record_type: str = "conversation", reader: str | None = None, fmt: str | None = None,
    model: str | None = None, max_length: int | None = None,
    columns: dict | None = None, tags: dict | None = None, other_splits=(), template: str | None = None,
    progress: bool = True,
) -> CheckReport:
    """Check every `record_type` record of `path` (`reader`: the stage that reads them, for the report);
    `model` (a model dir) adds token-length checks. With `progress`, a bar on a terminal's stderr.

    `template` names a chat template for a tokenizer that has none (see posttrain.models.templates).
    """
    if record_type not in _RECORD_CHECKS:
        raise PosttrainError(f"record_type: expected one of {', '.join(_RECORD_CHECKS)}, got {record_type!r}")
    report = CheckReport(str(path), reader or record_type)
    findings, stats = report.findings, report.stats

    others: dict[bytes, tuple[str, int]] = {}
    for other in other_splits:
        for line, record, _ in _records(other, fmt, columns, tags, record_type):
            if record is not None:
                others.setdefault(_digest(record), (str(other), line))

    # token lengths are measured on conversations (what SFT cuts to max_length)
    tokenizer = _load_tokenizer(model, template) if model and record_type == "conversation" else None
    max_length = max_length or DEFAULT_MAX_LENGTH
    lengths: list[int] = []
    seen: dict[bytes, int] = {}
    records = valid = duplicates = overlap = over = 0
    pending: list[tuple[int, dict]] = []  # records waiting to be tokenized, a batch at a time
    rows = _records(path, fmt, columns, tags, record_type)
    for line, record, finding in with_progress(rows, enabled=progress, description=f"checking {path}"):
        records += 1
        if finding:
            findings.append(finding)
            continue
        valid += 1
        for level, message, kind in _RECORD_CHECKS[record_type](record):
            findings.append(Finding(level, line, message, kind))
        key = _digest(record)
        if key in seen:
            duplicates += 1
            findings.append(Finding("warning", line, f"duplicate of line {seen[key]}", "duplicate"))
        else:
            seen[key] = line
        if key in others:
            overlap += 1
            where, other_line = others[key]
            findings.append(Finding("error", line, f"also in {where}:{other_line}; a record in two splits leaks "
                                    "evaluation data into training", "overlap"))
        if tokenizer is not None:
            pending.append((line, record))
            if len(pending) == _LENGTH_BATCH:
                over += _measure(tokenizer, pending, max_length, lengths, findings)
    if pending:
        over += _measure(tokenizer, pending, max_length, lengths, findings)
    if tokenizer is not None:  # a batch's length warnings go back beside its lines' other findings
        findings.sort(key=lambda f: f.line or 0)

    stats.update(records=records, valid=valid, invalid=records - valid, duplicates=duplicates)
    if other_splits:
        stats["overlap"] = overlap
    if records == 0:
        findings.append(Finding("warning", None, "no records", "empty"))
    if tokenizer is not None and lengths:
        a = np.asarray(lengths)
        stats["tokens"] = {"min": int(a.min()), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
                           "max": int(a.max()), "max_length": max_length, "over_max_length": over}
    return report


def _load_tokenizer(model: str, template: str | None):
    return load_tokenizer(str(model), template=template)


_LENGTH_BATCH = 512


def _measure(tokenizer, pending: list, max_length: int, lengths: list, findings: list) -> int:
    """Tokenize the pending records (and empty the list); warn about each over max_length; return their count."""
    counts = token_counts(tokenizer, [record for _, record in pending])
    lengths.extend(counts)
    cut = [(line, record, n) for (line, record), n in zip(pending, counts) if n > max_length]
    # only a record that is cut needs its first assistant token found: those of the batch, in one call
    firsts = token_lengths(tokenizer, [record for _, record, _ in cut]) if cut else []
    for (line, _, n), (_, first_label) in zip(cut, firsts):
        warning = f"{n} tokens, over max_length {max_length}; it would be cut"
        if first_label is None or first_label >= max_length:
            warning += ", leaving no assistant token to learn from"
        findings.append(Finding("warning", line, warning, "length"))
    pending.clear()
    return len(cut)
