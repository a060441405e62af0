"""Step-labelled solutions (`prompt`, `completions`, `labels`): posttrain's own and TRL's stepwise supervision.

TRL documents this shape as its "stepwise supervision" dataset type (what its
old PRMTrainer read): `prompt` a string (or messages), `completions` the
solution's steps in order, `labels` one boolean per step. posttrain's `steps`
records have the same keys, so one module reads both; the process reward
stage reads them. Parquet hands back numpy arrays, made plain lists here.

Fields (UNKNOWN_FIELDS = "refuse"): prompt, completions and labels (or the
columns dataset_info.json names for them) are read; any other field is a
RecordError naming it, and bookkeeping fields (id, source, ...) are ignored
with a warning.
"""

from __future__ import annotations

from posttrain.data.formats import fields
from posttrain.data.records import plain_values, validate_steps

RECORD = "steps"
UNKNOWN_FIELDS = "refuse"
_KEYS = ("prompt", "completions", "labels")


def detect(row: dict) -> bool:
    return "completions" in row and "labels" in row and "prompt" in row


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    row = plain_values(row)
    fields.check(row, "steps", {(columns or {}).get(key, key) for key in _KEYS}, record=RECORD, columns=columns)
    if columns:  # dataset_info.json may name other columns for prompt/completions/labels
        row = {**row, **{key: row.get(column) for key, column in columns.items()
                         if key in ("prompt", "completions", "labels")}}
    return validate_steps(row)


def from_record(record: dict) -> dict:
    prompt = record["prompt"]
    # TRL's standard (non-conversational) form: a lone user turn is written as its text
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        prompt = prompt[0]["content"]
    return {"prompt": prompt, "completions": record["completions"], "labels": record["labels"]}
