"""The canonical records every outside format converts to, and their checks.

Stages read only these shapes, so a format module's whole job is to produce
one of them; the validators here are the single definition of "well formed".

conversation: {"messages": [{"role", "content"}, ...]}
    an optional system message first, then user and assistant turns
    alternating, starting with user and ending with assistant. A `tool`
    message (a function's result) may follow an assistant turn and is
    answered by an assistant turn.
"""

from __future__ import annotations

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


def validate_conversation(record: Any, *, require_assistant_last: bool = True) -> dict:
    """Return the record as a clean conversation, or raise RecordError.

    Extra top-level keys are dropped; message keys other than role/content
    are kept only if they are `name` or `tool_calls` (passed to templates).
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
        content = message.get("content")
        if not isinstance(content, str):
            raise RecordError(f"{field}.content", f"expected a string, got {type(content).__name__}")
        if not content.strip() and role != "system":
            raise RecordError(f"{field}.content", "empty; expected text")
        if role not in _NEXT[previous]:
            allowed = " or ".join(sorted(_NEXT[previous]))
            where = "first" if previous is None else f"after {previous}"
            raise RecordError(f"{field}.role", f"expected {allowed} {where}, got {role}")
        item = {"role": role, "content": content}
        for key in ("name", "tool_calls"):
            if message.get(key) is not None:
                item[key] = message[key]
        clean.append(item)
        previous = role
    if require_assistant_last and previous != "assistant":
        raise RecordError(f"messages[{len(messages) - 1}].role", f"expected the last turn to be assistant, got {previous}")
    return {"messages": clean}


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


def validate_preference(record: Any) -> dict:
    """preference: {"prompt": messages (may be empty), "chosen": str or assistant messages, "rejected": same,
    "tie": bool, "margin": float or None}. Responses become assistant message lists, so every preference record
    reads the same way (TRL's explicit-prompt conversational form); ties are kept for judges."""
    if not isinstance(record, dict):
        raise RecordError("record", f"expected a JSON object, got {type(record).__name__}")
    prompt = record.get("prompt") or []
    out = {"prompt": validate_prompt(prompt) if prompt else []}
    for key in ("chosen", "rejected"):
        value = record.get(key)
        if isinstance(value, str):
            if not value.strip():
                raise RecordError(key, "empty; expected text")
            value = [{"role": "assistant", "content": value}]
        if not isinstance(value, list) or not value:
            raise RecordError(key, "expected a string or a list of assistant messages")
        for i, message in enumerate(value):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                raise RecordError(f"{key}[{i}]", "expected an assistant message {role: assistant, content}")
            if not isinstance(message.get("content"), str) or not message["content"].strip():
                raise RecordError(f"{key}[{i}].content", "expected non-empty text")
        out[key] = [{"role": "assistant", "content": m["content"]} for m in value]
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
    prompt = record.get("prompt") or []
    completion = record.get("completion")
    if isinstance(completion, str):
        if not completion.strip():
            raise RecordError("completion", "empty; expected text")
        completion = [{"role": "assistant", "content": completion}]
    if not isinstance(completion, list) or not completion:
        raise RecordError("completion", "missing; expected a string or a list of assistant messages"
                          if completion is None else "expected a string or a list of assistant messages")
    for i, message in enumerate(completion):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            raise RecordError(f"completion[{i}]", "expected an assistant message {role: assistant, content}")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            raise RecordError(f"completion[{i}].content", "expected non-empty text")
    label = record.get("label")
    if not isinstance(label, bool):
        raise RecordError("label", "missing; expected true (desirable) or false (undesirable)" if label is None
                          else f"expected true (desirable) or false (undesirable), got {label!r}")
    return {"prompt": validate_prompt(prompt) if prompt else [],
            "completion": [{"role": "assistant", "content": m["content"]} for m in completion], "label": label}
