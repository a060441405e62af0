"""Unpaired preference rows: one answer and whether it is desirable, what a KTO stage learns from.

Reads TRL's unpaired preference rows (`prompt`, `completion`, `label`;
strings or messages) and LLaMA-Factory's KTO datasets: a conversation in
alpaca, sharegpt or OpenAI layout whose last turn is the answer, with the
label in the column `columns.kto_tag` names (dataset_info.json's
`"columns": {"kto_tag": "label"}`), the entry's `columns`/`tags` honoured.
"""

from __future__ import annotations

from posttrain.data.formats import alpaca, sharegpt
from posttrain.data.records import validate_unpaired_preference
from posttrain.errors import RecordError

RECORD = "unpaired_preference"


def detect(row: dict) -> bool:
    return "completion" in row and "label" in row


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    columns = columns or {}
    label_column = columns.get("kto_tag", "label")
    if label_column not in row:
        raise RecordError(label_column, "missing; expected true (desirable) or false (undesirable)")
    label = row[label_column]
    if "completion" in row and "kto_tag" not in columns:  # TRL's own rows
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


def _conversation(row: dict, columns: dict, tags: dict | None) -> dict:
    """The row as a conversation: a list of turns (sharegpt's reader takes from/value and role/content alike), or
    alpaca's instruction/input/output."""
    layout = {key: value for key, value in columns.items() if key != "kto_tag"}
    column = layout.get("messages") or ("conversations" if "conversations" in row else "messages")
    if column in row:
        return sharegpt.to_conversation(row, {**layout, "messages": column}, tags)
    return alpaca.to_conversation(row, layout, tags)


def from_record(record: dict) -> dict:
    return {"prompt": record["prompt"], "completion": record["completion"], "label": record["label"]}
