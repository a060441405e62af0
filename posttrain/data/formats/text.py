"""Raw text for continued pretraining: {"text": ...} rows (jsonl, json, parquet) or a .txt file, a row a line.

Fields (UNKNOWN_FIELDS = "refuse"): `text` is read, and any other field is
a RecordError naming it; bookkeeping fields (id, url, timestamp, meta, as
web corpora like C4 carry them) are ignored with a warning. A table whose
text column `columns.prompt` names (LLaMA-Factory's pt datasets; a corpus of
title, abstract, keywords, ...) has said which column is the document: its
other columns are ignored with a warning naming each (media still refused).
"""

from __future__ import annotations

from posttrain.data.formats import fields
from posttrain.data.records import validate_text

RECORD = "text"
UNKNOWN_FIELDS = "refuse"


def detect(row: dict) -> bool:
    return isinstance(row, dict) and set(row) == {"text"}


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    column = columns["prompt"] if columns and "prompt" in columns else "text"
    ignores = fields.BOOKKEEPING
    if column != "text" and isinstance(row, dict):
        ignores = {**{key: f"columns.prompt names {column!r} as the text" for key in row}, **ignores}
    fields.check(row, "text", {column}, record=RECORD, columns=columns, ignores=ignores)
    if column != "text" and isinstance(row, dict):  # LLaMA-Factory's pt datasets: columns.prompt
        row = {"text": row.get(column)}
    return validate_text(row)


def from_record(record: dict) -> dict:
    return record
