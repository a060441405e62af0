"""OpenAI chat format: `{"messages": [{"role", "content"}, ...]}`.

This is also posttrain's canonical conversation, so converting is mostly
validating. It exists as a format so files from OpenAI-style fine-tuning
tools (content given as a list of text parts) read without a manual step.
"""

from __future__ import annotations

from posttrain.data.records import validate_conversation
from posttrain.errors import RecordError

RECORD = "conversation"


def detect(row: dict) -> bool:
    return "messages" in row


def to_conversation(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    column = (columns or {}).get("messages", "messages")
    if column not in row:
        raise RecordError(column, "missing; expected a list of {role, content} messages")
    messages = row[column]
    if isinstance(messages, list):
        messages = [_flatten(m, f"{column}[{i}]") for i, m in enumerate(messages)]
    try:
        return validate_conversation({"messages": messages})
    except RecordError as e:
        if column == "messages" or not e.field.startswith("messages"):
            raise
        raise RecordError(column + e.field[len("messages"):], e.expected) from None


def _flatten(message, field: str):
    # OpenAI allows content as [{"type": "text", "text": ...}]; text-only models need the joined string
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        parts = message["content"]
        texts = []
        for j, part in enumerate(parts):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise RecordError(f"{field}.content[{j}]", 'expected a text part {"type": "text", "text": ...}')
            texts.append(part["text"])
        return {**message, "content": "".join(texts)}
    return message


def from_conversation(record: dict) -> dict:
    return validate_conversation(record)


to_record = to_conversation
