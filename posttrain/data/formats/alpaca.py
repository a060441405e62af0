"""Alpaca format: `instruction`, `input`, `output`, optional `system`, `history` and `tools`.

LLaMA-Factory's default format, and the shape of most instruction sets
(including the instruction/input/output medical sets). The column names can
be remapped with LLaMA-Factory's `columns` (prompt, query, response, system,
history, tools), so a `dataset_info.json` entry works unchanged. LLaMA-Factory
reads a tool list in alpaca too (its converter's `_tools`): it becomes the
record's `tools`, shown to the model in the system turn; the output stays a
plain answer, since alpaca has no function_call turn.

Fields (UNKNOWN_FIELDS = "refuse"): `to_record` reads the six columns above;
any other field is a RecordError naming it (with what to do for
LLaMA-Factory's images, kto_tag, chosen, ...), and bookkeeping fields (id,
metadata, source, ...) are ignored with a warning. `to_conversation` is the
layout alone, for formats that read more of the row (unpaired_preference).
"""

from __future__ import annotations

import json

from posttrain.data.formats import fields
from posttrain.data.records import validate_conversation
from posttrain.errors import RecordError

RECORD = "conversation"
UNKNOWN_FIELDS = "refuse"
DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                   "history": "history", "tools": "tools"}


def detect(row: dict) -> bool:
    return "instruction" in row and "output" in row


def _string(row: dict, column: str, *, required: bool, nonempty: bool = False) -> str:
    value = row.get(column)
    if value is None:
        if required:
            raise RecordError(column, "missing; expected a string")
        return ""
    if not isinstance(value, str):
        raise RecordError(column, f"expected a string, got {type(value).__name__}")
    if nonempty and not value.strip():
        raise RecordError(column, "empty; expected text")
    return value


def fields_read(row: dict, columns: dict | None = None) -> set[str]:
    """The row fields this format reads under `columns`."""
    return set({**DEFAULT_COLUMNS, **(columns or {})}[key] for key in DEFAULT_COLUMNS)


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    fields.check(row, "alpaca", fields_read(row, columns), columns=columns)
    return to_conversation(row, columns, tags)


def to_conversation(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    instruction = _string(row, cols["prompt"], required=True)
    query = _string(row, cols["query"], required=False)
    if not instruction.strip() and not query.strip():
        # some sets leave the instruction empty and put the question in the input
        raise RecordError(cols["prompt"], "empty; expected text")
    output = _string(row, cols["response"], required=True, nonempty=True)
    system = _string(row, cols["system"], required=False)

    messages = [{"role": "system", "content": system}] if system else []
    history = row.get(cols["history"])
    if history is not None:
        if not isinstance(history, list):
            what = type(history).__name__
            raise RecordError(cols["history"], f"expected a list of [user, assistant] pairs, got {what}")
        for i, pair in enumerate(history):
            field = f"{cols['history']}[{i}]"
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise RecordError(field, "expected a [user, assistant] pair")
            for j, (role, text) in enumerate(zip(("user", "assistant"), pair)):
                if not isinstance(text, str):
                    raise RecordError(f"{field}[{j}]", f"expected a string, got {type(text).__name__}")
                if not text.strip():
                    raise RecordError(f"{field}[{j}]", "empty; expected text")
                messages.append({"role": role, "content": text})
    # LLaMA-Factory joins instruction and input with one newline
    prompt = "\n".join(part for part in (instruction, query) if part)
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return validate_conversation({"messages": messages, "tools": row.get(cols["tools"])}, tools_field=cols["tools"])


def from_conversation(record: dict, *, validated: bool = False) -> dict:
    record = record if validated else validate_conversation(record)
    messages = record["messages"]
    out = {}
    if messages[0]["role"] == "system":
        if messages[0]["content"]:
            out["system"] = messages[0]["content"]
        messages = messages[1:]
    if any(m["role"] == "tool" or m.get("tool_calls") for m in messages):
        raise RecordError("messages", "alpaca cannot hold tool messages or calls; convert to sharegpt or openai")
    pairs = [[messages[i]["content"], messages[i + 1]["content"]] for i in range(0, len(messages), 2)]
    *history, (instruction, output) = pairs
    row = {"instruction": instruction, "input": "", "output": output}
    if "system" in out:
        row["system"] = out["system"]
    if history:
        row["history"] = history
    if record.get("tools"):
        row["tools"] = json.dumps([tool["function"] for tool in record["tools"]], ensure_ascii=False)
    return row
