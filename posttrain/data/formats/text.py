"""Raw text for continued pretraining: {"text": ...} rows (jsonl, json, parquet) or a .txt file, a row a line."""

from __future__ import annotations

from posttrain.data.records import validate_text

RECORD = "text"


def detect(row: dict) -> bool:
    return isinstance(row, dict) and set(row) == {"text"}


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if columns and "prompt" in columns and isinstance(row, dict):  # LLaMA-Factory's pt datasets: columns.prompt
        row = {"text": row.get(columns["prompt"])}
    return validate_text(row)


def from_record(record: dict) -> dict:
    return record
