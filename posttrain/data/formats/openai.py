"""OpenAI chat format: `{"messages": [{"role", "content"}, ...], "tools": [...]}`.

This is also posttrain's canonical conversation, so converting is mostly
validating. It exists as a format so files from OpenAI-style fine-tuning
tools (content given as a list of text parts, tool-call arguments given as
JSON text, a null content on a turn that only calls) read without a manual
step. Tool use is OpenAI's: assistant `tool_calls`, `tool` messages (with
their `tool_call_id`) and the row's `tools`, read and written as they are.
A `system` column, as LLaMA-Factory's openai converter reads it, becomes the
system turn when the messages have none.

Fields (UNKNOWN_FIELDS = "refuse"): the messages, system and tools columns
are read; any other field is a RecordError naming it, bookkeeping fields (id,
source, ...) are ignored with a warning, and a message key other than role,
content, name, tool_calls and tool_call_id is refused (records.py).
"""

from __future__ import annotations

from posttrain.data.formats import fields
from posttrain.data.records import validate_conversation
from posttrain.errors import RecordError

RECORD = "conversation"
UNKNOWN_FIELDS = "refuse"


def detect(row: dict) -> bool:
    return "messages" in row


def fields_read(row: dict, columns: dict | None = None) -> set[str]:
    columns = columns or {}
    return {columns.get("messages", "messages"), columns.get("system", "system"), columns.get("tools", "tools")}


def to_conversation(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    fields.check(row, "openai", fields_read(row, columns), columns=columns)
    columns = columns or {}
    column = columns.get("messages", "messages")
    if column not in row:
        raise RecordError(column, "missing; expected a list of {role, content} messages")
    messages = row[column]
    if isinstance(messages, list):
        messages = [_flatten(m, f"{column}[{i}]") for i, m in enumerate(messages)]
    system_column, tools_column = columns.get("system", "system"), columns.get("tools", "tools")
    system = row.get(system_column)
    if system is not None and not isinstance(system, str):
        raise RecordError(system_column, f"expected a string, got {type(system).__name__}")
    offset = 0
    if system and isinstance(messages, list) and messages and (
            not isinstance(messages[0], dict) or messages[0].get("role") != "system"):
        messages, offset = [{"role": "system", "content": system}, *messages], 1
    try:
        return validate_conversation({"messages": messages, "tools": row.get(tools_column)}, tools_field=tools_column)
    except RecordError as e:
        raise _in_source_terms(e, column, system_column, offset) from None


def _in_source_terms(error: RecordError, column: str, system_column: str, offset: int) -> RecordError:
    """Name the column and message the user wrote (the system column's turn moves the others by one)."""
    if error.field != "messages" and not error.field.startswith("messages["):
        return error  # a tools error, already named by its column (validate_conversation's tools_field)
    if error.field == "messages":
        return RecordError(column, error.expected)
    index, _, rest = error.field[len("messages["):].partition("]")
    i = int(index) - offset
    if i < 0:
        return RecordError(system_column, error.expected)
    return RecordError(f"{column}[{i}]{rest}", error.expected)


def _flatten(message, field: str):
    # OpenAI allows content as [{"type": "text", "text": ...}]; text-only models need the joined string
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        parts = message["content"]
        texts = []
        for j, part in enumerate(parts):
            if isinstance(part, dict) and part.get("type") in ("image_url", "input_audio", "image", "video", "audio"):
                raise RecordError(f"{field}.content[{j}]", f"{part['type']} content; posttrain trains text-only "
                                  "models: drop it or use a vision-language toolkit")
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise RecordError(f"{field}.content[{j}]", 'expected a text part {"type": "text", "text": ...}')
            texts.append(part["text"])
        return {**message, "content": "".join(texts)}
    return message


def from_conversation(record: dict, *, validated: bool = False) -> dict:
    return record if validated else validate_conversation(record)


to_record = to_conversation
