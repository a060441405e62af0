"""The canonical records every outside format converts to, and their checks.

Stages read only these shapes, so a format module's whole job is to produce
one of them; the validators here are the single definition of "well formed".

conversation: {"messages": [{"role", "content"}, ...], "tools": [...] (optional)}
    an optional system message first, then user and assistant turns
    alternating, starting with user and ending with assistant. A `tool`
    message (a function's result) may follow an assistant turn and is
    answered by an assistant turn. An assistant turn may call functions:
    `tool_calls: [{"type": "function", "function": {"name", "arguments": {...}}}]`
    (its content may then be empty); `tools` lists the functions the model may
    call, as OpenAI function schemas `{"type": "function", "function": {"name",
    "description", "parameters"}}`. Both are what chat templates render
    (transformers' `tools=` and `tool_calls`), so the model trains on the text
    it will be prompted with.
"""

from __future__ import annotations

import json
from typing import Any

from posttrain.errors import RecordError

ROLES = ("system", "user", "assistant", "tool")
# Which roles may follow each role (None = the start of the conversation).
_NEXT = {
    None: {"system", "user"},
    "system": {"user"},
    "user": {"assistant"},
    "assistant": {"user", "tool"},
    "tool": {"assistant", "tool"},
}


def plain_values(value: Any) -> Any:
    """`value` with numpy arrays made lists, all the way down: readers of parquet
    (pandas, datasets with a numpy format) hand lists back as arrays, and records are plain JSON values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_values(v) for v in value]
    return value


# Message keys a conversation keeps: what chat templates read. Any other key with a value is refused, not dropped.
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


def validate_conversation(record: Any, *, require_assistant_last: bool = True, tools_field: str = "tools") -> dict:
    """Return the record as a clean conversation, or raise RecordError (a tools error named by `tools_field`, the
    column a format read the tools from).

    Top-level keys other than messages and tools are dropped (a format decides what to do with a row's other
    fields before it gets here: see formats/fields.py); a message key other than MESSAGE_KEYS is refused unless
    it is empty. Tools given as bare function schemas (or as JSON text) come back wrapped as OpenAI's; an empty
    tool list is no tool list.
    """
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    messages = record.get("messages")
    if messages is None:
        raise RecordError("messages", "missing; expected a list of {role, content} messages")
    if not isinstance(messages, list) or not messages:
        raise RecordError("messages", "expected a non-empty list of {role, content} messages")
    clean = []
    previous = None
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RecordError(field, f"expected an object with role and content, got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise RecordError(f"{field}.role", f"expected one of {', '.join(ROLES)}, got {role!r}")
        calls = message.get("tool_calls") or None
        if calls is not None:
            if role != "assistant":
                raise RecordError(f"{field}.tool_calls", f"expected tool calls on an assistant turn, not a {role} one")
            calls = validate_tool_calls(calls, f"{field}.tool_calls")
        content = message.get("content")
        if content is None and calls:
            content = ""  # OpenAI's null content of a turn that only calls functions
        if not isinstance(content, str):
            raise RecordError(f"{field}.content", f"expected a string, got {type(content).__name__}")
        if not content.strip() and role != "system" and not calls:
            raise RecordError(f"{field}.content", "empty; expected text")
        if role not in _NEXT[previous]:
            allowed = " or ".join(sorted(_NEXT[previous]))
            where = "first" if previous is None else f"after {previous}"
            raise RecordError(f"{field}.role", f"expected {allowed} {where}, got {role}")
        item = {"role": role, "content": content}
        if calls:
            item["tool_calls"] = calls
        for key in ("name", "tool_call_id"):
            if message.get(key) is not None:
                if not isinstance(message[key], str):
                    raise RecordError(f"{field}.{key}", f"expected a string, got {type(message[key]).__name__}")
                item[key] = message[key]
        for key, value in message.items():
            if key not in MESSAGE_KEYS and not _empty(value):
                raise RecordError(f"{field}.{key}", f"a message key posttrain does not read; expected only "
                                  f"{', '.join(MESSAGE_KEYS)}: drop it, or fold it into the content")
        clean.append(item)
        previous = role
    if require_assistant_last and previous != "assistant":
        raise RecordError(f"messages[{len(messages) - 1}].role",
                          f"expected the last turn to be assistant, got {previous}")
    out = {"messages": clean}
    tools = validate_tools(record.get("tools"), tools_field)
    if tools:
        out["tools"] = tools
    return out


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (list, dict)) and not value)


def _json(value: Any, field: str, expected: str) -> Any:
    """`value`, parsed when it is JSON text (LLaMA-Factory stores tools as a string, OpenAI arguments too)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise RecordError(field, f"expected {expected}, got text that is not JSON ({e.msg} at {e.pos})") from None


def validate_tool_calls(calls: Any, field: str = "tool_calls") -> list[dict]:
    """OpenAI-style calls `[{"type": "function", "function": {"name", "arguments": {...}}}]`; a bare
    `{"name", "arguments"}` is wrapped, arguments given as JSON text are parsed, and an `id` is kept."""
    expected = 'a list of calls {"type": "function", "function": {"name": ..., "arguments": {...}}}'
    if not isinstance(calls, list) or not calls:
        raise RecordError(field, f"expected {expected}")
    clean = []
    for j, call in enumerate(calls):
        where = f"{field}[{j}]"
        if not isinstance(call, dict):
            raise RecordError(where, "expected a call {type, function: {name, arguments}}, got "
                              f"{type(call).__name__}")
        function, where, name = _function(call, where, "an object {name, arguments}")
        if "arguments" not in function:
            raise RecordError(f"{where}.arguments", "missing; expected an object of arguments ({} for none)")
        arguments = _json(function["arguments"], f"{where}.arguments", "an object of arguments")
        if not isinstance(arguments, dict):
            raise RecordError(f"{where}.arguments", f"expected an object of arguments, got {type(arguments).__name__}")
        item = {"type": "function", "function": {"name": name, "arguments": arguments}}
        if isinstance(call.get("id"), str) and call["id"]:
            item["id"] = call["id"]
        clean.append(item)
    return clean


def _function(item: dict, where: str, expected: str) -> tuple[dict, str, str]:
    """(the function object, where it is, its name) of a call or a tool: OpenAI's `{"type": "function",
    "function": {...}}` or the bare object."""
    if item.get("type", "function") != "function":
        raise RecordError(f"{where}.type", f"expected function, got {item.get('type')!r}")
    if "function" in item:
        item, where = item["function"], f"{where}.function"
    if not isinstance(item, dict):
        raise RecordError(where, f"expected {expected}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordError(f"{where}.name", "missing; expected the function's name" if name is None
                          else f"expected the function's name, got {name!r}")
    return item, where, name


def validate_tools(tools: Any, field: str = "tools") -> list[dict]:
    """The functions a conversation may call, as OpenAI function schemas; [] when there are none.

    Accepts the schemas bare (`{"name", "description", "parameters"}`, glaive's and LLaMA-Factory's form) or
    wrapped (`{"type": "function", "function": {...}}`, OpenAI's), as a list or as its JSON text."""
    if _empty(tools) or (isinstance(tools, str) and not tools.strip()):
        return []
    tools = _json(tools, field, "a list of function schemas")
    if not isinstance(tools, list):
        raise RecordError(field, f"expected a list of function schemas, got {type(tools).__name__}")
    clean = []
    for j, tool in enumerate(tools):
        where = f"{field}[{j}]"
        if not isinstance(tool, dict):
            raise RecordError(where, f"expected a function schema {{name, description, parameters}}, got "
                              f"{type(tool).__name__}")
        schema, where, _ = _function(tool, where, "a function schema {name, description, parameters}")
        if schema.get("parameters") is not None and not isinstance(schema["parameters"], dict):
            raise RecordError(f"{where}.parameters", "expected a JSON schema object")
        clean.append({"type": "function", "function": schema})
    return clean


def validate_prompt(prompt: Any, *, ends_with_user: bool = True) -> list[dict]:
    """The prompt rule every record type shares: text is one user turn; messages are checked as a
    conversation's (roles, order, content), with errors named at `prompt[i]`; with `ends_with_user`, the
    last turn is not the assistant's (the model answers it)."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    try:
        messages = validate_conversation({"messages": prompt}, require_assistant_last=False)["messages"]
    except RecordError as e:
        raise RecordError("prompt" + e.field[len("messages"):], e.expected) from None
    if ends_with_user and messages[-1]["role"] == "assistant":
        raise RecordError(f"prompt[{len(messages) - 1}].role", "expected the prompt to end with a user turn")
    return messages


def validate_rl_prompt(record: Any) -> dict:
    """rl_prompt: {"prompt": messages (no assistant turn at the end), "data_source": str, "ground_truth": any,
    "extra_info": dict}. The prompt stays as messages: the chat template is applied once, when training."""
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    messages = validate_prompt(record.get("prompt"))
    source = record.get("data_source")
    if not isinstance(source, str) or not source.strip():
        raise RecordError("data_source", "expected a non-empty string naming the task (it selects the reward)")
    if "ground_truth" not in record:
        raise RecordError("ground_truth", "missing; expected the reference the reward scores against")
    extra = record.get("extra_info") or {}
    if not isinstance(extra, dict):
        raise RecordError("extra_info", f"expected an object, got {type(extra).__name__}")
    return {"prompt": messages, "data_source": source, "ground_truth": record["ground_truth"], "extra_info": extra}


def validate_answer(value: Any, key: str) -> list[dict]:
    """An answer of a preference record (chosen, rejected, a KTO completion): a string or assistant messages, as
    assistant messages. A message key beside role and content (a tool call, a name) is refused: the trainers
    read the text alone, and would train on an answer without it."""
    if isinstance(value, str):
        if not value.strip():
            raise RecordError(key, "empty; expected text")
        value = [{"role": "assistant", "content": value}]
    if not isinstance(value, list) or not value:
        raise RecordError(key, "missing; expected a string or a list of assistant messages" if value is None
                          else "expected a string or a list of assistant messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            raise RecordError(f"{key}[{i}]", "expected an assistant message {role: assistant, content}")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise RecordError(f"{key}[{i}].content", "expected non-empty text")
        for extra, held in message.items():
            if extra not in ("role", "content") and not _empty(held):
                raise RecordError(f"{key}[{i}].{extra}", "a message key preference answers do not hold (expected "
                                  "only role and content): drop it, or fold it into the content")
    return [{"role": "assistant", "content": m["content"]} for m in value]


def validate_preference(record: Any) -> dict:
    """preference: {"prompt": messages (may be empty), "chosen": str or assistant messages, "rejected": same,
    "tie": bool, "margin": float or None}. Responses become assistant message lists, so every preference record
    reads the same way (TRL's explicit-prompt conversational form); ties are kept for judges."""
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    prompt = record.get("prompt")  # none is no prompt; 0 or false is not one either, and is refused
    out = {"prompt": [] if _empty(prompt) else validate_prompt(prompt)}
    for key in ("chosen", "rejected"):
        out[key] = validate_answer(record.get(key), key)
    tie = record.get("tie", False)
    if not isinstance(tie, bool):
        raise RecordError("tie", f"expected true or false, got {tie!r}")
    margin = record.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise RecordError("margin", f"expected a number, got {margin!r}")
    out.update(tie=tie, margin=None if margin is None else float(margin))
    return out


def validate_steps(record: Any) -> dict:
    """steps: {"prompt": str or messages, "completions": [step, ...], "labels": [bool, ...]} (process reward).

    One label per step says whether that step is correct. The prompt becomes messages ending with a user turn,
    so the chat template is applied once, when training; 0/1 labels (as some datasets store them) become bools.
    """
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    prompt = record.get("prompt")
    if prompt is None:
        raise RecordError("prompt", "missing; expected a string or a list of {role, content} messages")
    if isinstance(prompt, str) and not prompt.strip():
        raise RecordError("prompt", "empty; expected text")
    messages = validate_prompt(prompt)
    steps = record.get("completions")
    if not isinstance(steps, list) or not steps:
        raise RecordError("completions", "expected a non-empty list of step strings")
    for i, step in enumerate(steps):
        if not isinstance(step, str) or not step.strip():
            raise RecordError(f"completions[{i}]", f"expected a non-empty string, got {step!r}")
    labels = record.get("labels")
    if not isinstance(labels, list) or len(labels) != len(steps):
        got = f"{len(labels)} labels" if isinstance(labels, list) else type(labels).__name__
        raise RecordError("labels", f"expected a list of {len(steps)} booleans (one per step), got {got}")
    clean = []
    for i, label in enumerate(labels):
        if isinstance(label, bool) or (isinstance(label, int) and label in (0, 1)):
            clean.append(bool(label))
        else:
            raise RecordError(f"labels[{i}]", f"expected true or false, got {label!r}")
    return {"prompt": messages, "completions": list(steps), "labels": clean}


def validate_text(record: Any) -> dict:
    """A raw-text record for continued pretraining: {"text": "..."}, not empty."""
    if not isinstance(record, dict):
        raise RecordError("(record)", f"expected an object with a text field, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise RecordError("text", "missing; expected a string" if text is None else
                          f"expected a string, got {type(text).__name__}")
    if not text.strip():
        raise RecordError("text", "empty; expected some text")
    return {"text": text}


def validate_unpaired_preference(record: Any) -> dict:
    """unpaired_preference: {"prompt": messages (may be empty), "completion": assistant messages, "label": bool}.

    One answer, marked desirable (true) or not (false): what KTO learns from (TRL's unpaired preference type,
    LLaMA-Factory's `kto_tag`). A completion given as a string is one assistant turn."""
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    prompt = record.get("prompt")
    completion = validate_answer(record.get("completion"), "completion")
    label = record.get("label")
    if not isinstance(label, bool):
        raise RecordError("label", "missing; expected true (desirable) or false (undesirable)" if label is None
                          else f"expected true (desirable) or false (undesirable), got {label!r}")
    return {"prompt": [] if _empty(prompt) else validate_prompt(prompt),
            "completion": completion, "label": label}
