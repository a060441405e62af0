"""ShareGPT format: `conversations: [{"from", "value"}, ...]`, optional `system` and `tools`.

The most common multi-turn format, and LLaMA-Factory's second one. Its
`tags` (role_tag, content_tag, user_tag, ...) and `columns` (messages,
system, tools) from `dataset_info.json` are honoured, so any variant that
LLaMA-Factory reads reads here too. Without role tags both the ShareGPT
names (human, gpt, ...) and the OpenAI names (user, assistant, ...) are
accepted, since files mixing the two conventions are common.

Tool use reads as LLaMA-Factory trains it: a `function_call` turn is the
assistant calling functions, its value the JSON of one call `{"name",
"arguments"}` or a list of them (parallel calls), and becomes an assistant
turn with OpenAI `tool_calls`; an `observation` turn is the result, a `tool`
message; the `tools` column (JSON text or a list) is the record's `tools`.
Writing goes back the same way, so a round trip keeps them; the ids OpenAI
uses to tie a result to its call have no place here (the turn order ties
them) and are not written.

Fields (UNKNOWN_FIELDS = "refuse"): `to_record` reads the messages, system
and tools columns; any other field is a RecordError naming it, bookkeeping
fields (id, source, ...) are ignored with a warning, and a turn key other
than the role and content tags (and tool_calls, name, tool_call_id) is
refused too. `to_conversation` is the layout alone, for formats that read
more of the row (preference, unpaired_preference) and apply their own rule.
"""

from __future__ import annotations

import json

from posttrain.data.formats import fields
from posttrain.data.records import validate_conversation, validate_tool_calls
from posttrain.errors import RecordError

RECORD = "conversation"
UNKNOWN_FIELDS = "refuse"
# LLaMA-Factory's defaults; a function_call is the assistant's turn and an observation the tool's answer.
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
_ROLE_OF_TAG = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
                "function_tag": "assistant", "system_tag": "system"}
_DEFAULT_NAMES = {"human": "user", "gpt": "assistant", "observation": "tool", "function_call": "assistant",
                  "system": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
# keys of a turn passed on as they are (OpenAI's, for files that mix the conventions)
_PASSED_KEYS = ("tool_calls", "name", "tool_call_id")
_CALL = 'JSON of a call {"name": ..., "arguments": {...}} or a list of them (a function_call turn)'


def detect(row: dict) -> bool:
    return "conversations" in row


def _role_names(tags: dict) -> dict:
    if not any(key in tags for key in _ROLE_OF_TAG):
        return _DEFAULT_NAMES
    return {tags.get(key, DEFAULT_TAGS[key]): role for key, role in _ROLE_OF_TAG.items()}


def fields_read(row: dict, columns: dict | None = None) -> set[str]:
    """The row fields this format reads under `columns`."""
    columns = columns or {}
    return {columns.get("messages", "conversations"), columns.get("system", "system"), columns.get("tools", "tools")}


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    fields.check(row, "sharegpt", fields_read(row, columns), columns=columns)
    return to_conversation(row, columns, tags)


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
    function_tag = tags.get("function_tag", DEFAULT_TAGS["function_tag"])
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
        for key, value in turn.items():
            if key not in (role_tag, content_tag, *_PASSED_KEYS) and not fields.is_empty(value):
                raise RecordError(f"{field}.{key}", f"a turn key the sharegpt format does not read; expected only "
                                  f"{role_tag}, {content_tag} (or {', '.join(_PASSED_KEYS)}): drop it")
        if name == function_tag:
            message = {"role": "assistant", "content": "", "tool_calls": _calls(content, f"{field}.{content_tag}")}
        else:
            message = {"role": names[name], "content": content}
        message.update({key: turn[key] for key in _PASSED_KEYS if turn.get(key) is not None})
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
    tools_column = columns.get("tools", "tools")
    try:
        return validate_conversation({"messages": messages, "tools": row.get(tools_column)}, tools_field=tools_column)
    except RecordError as e:
        raise _in_source_terms(e, column, system_column, offset, tags, turns) from None


def _calls(text: str, field: str) -> list[dict]:
    """A function_call turn's JSON as OpenAI tool_calls; LLaMA-Factory's FunctionFormatter reads it the same way."""
    try:
        calls = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(field, f"expected {_CALL}, got text that is not JSON ({e.msg} at {e.pos})") from None
    calls = calls if isinstance(calls, list) else [calls]
    for j, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or "arguments" not in call:
            got = json.dumps(call, ensure_ascii=False)
            got = got if len(got) <= 80 else got[:77] + "..."
            raise RecordError(field, f"expected {_CALL}, got {f'call {j}: ' if len(calls) > 1 else ''}{got}")
    try:
        return validate_tool_calls([{"name": c["name"], "arguments": c["arguments"]} for c in calls])
    except RecordError as e:
        raise RecordError(field, f"expected {_CALL}; {e.field}: {e.expected}") from None


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
    if key in ("role", "content"):
        key = role_tag if key == "role" else content_tag
    return RecordError(f"{column}[{i}].{key}", error.expected)


def from_conversation(record: dict, *, validated: bool = False) -> dict:
    record = record if validated else validate_conversation(record)
    out = []
    for i, message in enumerate(record["messages"]):
        if message.get("tool_calls"):
            if message["content"].strip():
                raise RecordError(f"messages[{i}].content", "sharegpt cannot hold text and tool calls in one turn "
                                  "(a function_call turn is the calls' JSON alone); convert to openai")
            calls = [c["function"] for c in message["tool_calls"]]
            out.append({"from": "function_call", "value": json.dumps(calls[0] if len(calls) == 1 else calls,
                                                                     ensure_ascii=False)})
            continue
        name = {"user": "human", "assistant": "gpt", "tool": "observation", "system": "system"}[message["role"]]
        out.append({"from": name, "value": message["content"]})
    row = {"conversations": out}
    if record.get("tools"):
        # the bare schemas, as glaive and LLaMA-Factory's demos store them; reading wraps them again
        row["tools"] = json.dumps([tool["function"] for tool in record["tools"]], ensure_ascii=False)
    return row
