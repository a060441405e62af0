"""ShareGPT format: `conversations: [{"from", "value"}, ...]`, optional `system`.

The most common multi-turn format, and LLaMA-Factory's second one. Its
`tags` (role_tag, content_tag, user_tag, ...) and `columns` (messages,
system) from `dataset_info.json` are honoured, so any variant that
LLaMA-Factory reads reads here too. Without role tags both the ShareGPT
names (human, gpt, ...) and the OpenAI names (user, assistant, ...) are
accepted, since files mixing the two conventions are common.
"""

from __future__ import annotations

from posttrain.data.records import validate_conversation
from posttrain.errors import RecordError

RECORD = "conversation"
# LLaMA-Factory's defaults; a function_call is the assistant's turn and an observation the tool's answer.
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
_ROLE_OF_TAG = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
                "function_tag": "assistant", "system_tag": "system"}
_DEFAULT_NAMES = {"human": "user", "gpt": "assistant", "observation": "tool", "function_call": "assistant",
                  "system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def detect(row: dict) -> bool:
    return "conversations" in row


def _role_names(tags: dict) -> dict:
    if not any(key in tags for key in _ROLE_OF_TAG):
        return _DEFAULT_NAMES
    return {tags.get(key, DEFAULT_TAGS[key]): role for key, role in _ROLE_OF_TAG.items()}


def to_conversation(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    columns, tags = columns or {}, tags or {}
    column = columns.get("messages", "conversations")
    turns = row.get(column)
    if turns is None:
        raise RecordError(column, "missing; expected a list of messages")
    if not isinstance(turns, list) or not turns:
        raise RecordError(column, "expected a non-empty list of messages")
    names = _role_names(tags)
    messages = []
    for i, turn in enumerate(turns):
        field = f"{column}[{i}]"
        if not isinstance(turn, dict):
            raise RecordError(field, f"expected an object, got {type(turn).__name__}")
        role_tag, content_tag = _keys(turn, tags)
        name = turn.get(role_tag)
        if not isinstance(name, str) or name not in names:
            raise RecordError(f"{field}.{role_tag}", f"expected one of {', '.join(names)}, got {name!r}")
        content = turn.get(content_tag)
        if not isinstance(content, str):
            kind = type(content).__name__
            raise RecordError(f"{field}.{content_tag}",
                              "missing; expected a string" if content is None else f"expected a string, got {kind}")
        message = {"role": names[name], "content": content}
        if turn.get("tool_calls") is not None:
            message["tool_calls"] = turn["tool_calls"]
        messages.append(message)

    offset = 0
    system_column = columns.get("system", "system")
    system = row.get(system_column)
    if system is not None and not isinstance(system, str):
        raise RecordError(system_column, f"expected a string, got {type(system).__name__}")
    # a system turn inside the conversation wins over the column, as in LLaMA-Factory
    if isinstance(system, str) and system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
        offset = 1
    try:
        return validate_conversation({"messages": messages})
    except RecordError as e:
        raise _in_source_terms(e, column, system_column, offset, tags, turns) from None


def _keys(turn: dict, tags: dict) -> tuple[str, str]:
    """The role and content keys of one turn: the tags' if given, else from/value or role/content."""
    role_tag = tags.get("role_tag") or ("from" if "from" in turn or "role" not in turn else "role")
    return role_tag, tags.get("content_tag") or ("value" if role_tag == "from" else "content")


def _in_source_terms(error: RecordError, column: str, system_column: str, offset: int, tags: dict,
                     turns: list) -> RecordError:
    """Point a canonical-record error back at the turn and key the user wrote."""
    head, _, key = error.field.partition(".")
    if not head.startswith("messages[") or not key:
        return error
    i = int(head[len("messages["):-1]) - offset
    if i < 0:
        return RecordError(system_column, error.expected)
    role_tag, content_tag = _keys(turns[i], tags)
    return RecordError(f"{column}[{i}].{role_tag if key == 'role' else content_tag}", error.expected)


def from_conversation(record: dict) -> dict:
    messages = validate_conversation(record)["messages"]
    out = []
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "assistant" and i + 1 < len(messages) and messages[i + 1]["role"] == "tool":
            name = "function_call"  # an assistant turn answered by a tool is a call
        else:
            name = {"user": "human", "assistant": "gpt", "tool": "observation", "system": "system"}[role]
        out.append({"from": name, "value": message["content"]})
    return {"conversations": out}


to_record = to_conversation
