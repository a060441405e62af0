"""Unpaired preference rows: one answer and whether it is desirable, what a KTO stage learns from.

Reads TRL's unpaired preference rows (`prompt`, `completion`, `label`;
strings or messages) and LLaMA-Factory's KTO datasets: a conversation in
alpaca, sharegpt or OpenAI layout whose last turn is the answer, with the
label in the column `columns.kto_tag` names (dataset_info.json's
`"columns": {"kto_tag": "label"}`), the entry's `columns`/`tags` honoured.

Fields (UNKNOWN_FIELDS = "refuse"): the label column and TRL's prompt and
completion, or the conversation layout's columns (sharegpt's messages and
system, alpaca's instruction, input, output, system and history), are read.
A tool list is refused: unpaired preference records hold none. Bookkeeping
fields (id, source, ...) are ignored with a warning; any other field is a
RecordError naming it.
"""

from __future__ import annotations

from posttrain.data.formats import alpaca, fields, sharegpt
from posttrain.data.records import validate_unpaired_preference
from posttrain.errors import RecordError

RECORD = "unpaired_preference"
UNKNOWN_FIELDS = "refuse"


def detect(row: dict) -> bool:
    return "completion" in row and "label" in row


def fields_read(row: dict, columns: dict | None = None) -> set[str]:
    """The fields to_record reads of `row`: TRL's three, or the conversation layout's and the label."""
    columns = columns or {}
    label = columns.get("kto_tag", "label")
    if _is_trl_row(row, columns):
        return {label, "prompt", "completion"}
    layout = _layout(columns)
    column = _messages_column(row, layout)
    reads = sharegpt.fields_read(row, {**layout, "messages": column}) if column in row \
        else alpaca.fields_read(row, layout)
    return (reads - {layout.get("tools", "tools")}) | {label}


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    columns = columns or {}
    fields.check(row, "unpaired_preference", fields_read(row, columns), record=RECORD, columns=columns)
    label_column = columns.get("kto_tag", "label")
    if label_column not in row:
        raise RecordError(label_column, "missing; expected true (desirable) or false (undesirable)")
    label = row[label_column]
    if _is_trl_row(row, columns):
        prompt = row.get("prompt")
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) and prompt.strip() else prompt
        record = {"prompt": prompt, "completion": row["completion"], "label": label}
    else:
        messages = _conversation(row, columns, tags)["messages"]
        if messages[-1]["role"] != "assistant":
            raise RecordError(columns.get("messages", "messages"), "expected the last turn to be the answer")
        record = {"prompt": messages[:-1], "completion": messages[-1:], "label": label}
    try:
        return validate_unpaired_preference(record)
    except RecordError as e:
        if e.field == "label":
            raise RecordError(label_column, e.expected) from None
        raise


def _is_trl_row(row: dict, columns: dict) -> bool:
    return "completion" in row and "kto_tag" not in columns


def _layout(columns: dict) -> dict:
    return {key: value for key, value in columns.items() if key != "kto_tag"}


def _messages_column(row: dict, layout: dict) -> str:
    return layout.get("messages") or ("conversations" if "conversations" in row else "messages")


def _conversation(row: dict, columns: dict, tags: dict | None) -> dict:
    """The row as a conversation: a list of turns (sharegpt's reader takes from/value and role/content alike), or
    alpaca's instruction/input/output."""
    layout = _layout(columns)
    column = _messages_column(row, layout)
    if column in row:
        return sharegpt.to_conversation(row, {**layout, "messages": column}, tags)
    return alpaca.to_conversation(row, layout, tags)


def from_record(record: dict) -> dict:
    return {"prompt": record["prompt"], "completion": record["completion"], "label": record["label"]}
