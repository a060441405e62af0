"""LLaMA-Factory v1's own samples: messages whose content is a list of parts, `{"type": "text", "value": ...}`.

LLaMA-Factory's v1 trainers read `{"messages": [...]}` (SFT) and `{"chosen_messages": [...], "rejected_messages":
[...]}` (DPO), where each message is `{role, content: [{type, value}], loss_weight}` (data/v1_sft_demo.jsonl,
v1_dpo_demo.jsonl). The parts are joined into the text posttrain's records hold; a pair's shared opening turns
become its prompt, as in TRL's implicit form (formats/preference.py).

Nothing is dropped silently. A `reasoning` part is kept as the `<think>...</think>` the chat templates render;
tool-call and media parts are refused (posttrain's records hold neither in this form, and its models are
text-only). `loss_weight` is LLaMA-Factory's way of choosing which turns are trained: 0 on every other turn and 1
on assistant turns is what posttrain trains anyway; any other weight would train differently, so it is refused
with the message it is on. Fields (UNKNOWN_FIELDS = "refuse"): `extra_info`, `tools` and any other field besides
the messages are a RecordError naming it.
"""

from __future__ import annotations

from types import SimpleNamespace

from posttrain.data.formats import fields, preference
from posttrain.data.records import validate_conversation
from posttrain.errors import RecordError

_SFT_FIELDS = {"messages", "_dataset_name"}
_PAIR_FIELDS = {"chosen_messages", "rejected_messages", "_dataset_name"}


def _text(content, field: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RecordError(field, f"expected a list of {{type, value}} parts, got {type(content).__name__}")
    texts = []
    for j, part in enumerate(content):
        where = f"{field}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("value"), str):
            raise RecordError(where, "expected a {type, value} part with text as its value")
        if set(part) - {"type", "value"}:
            raise RecordError(f"{where}.{sorted(set(part) - {'type', 'value'})[0]}", "a part key v1 samples do not "
                                                                                     "have (expected type, value)")
        kind = part.get("type", "text")
        if kind == "text":
            texts.append(part["value"])
        elif kind == "reasoning":
            texts.append(f"<think>{part['value']}</think>")
        else:
            raise RecordError(f"{where}.type", f"{kind!r}: posttrain reads text and reasoning parts (its models "
                                               "are text-only, and tool calls are OpenAI tool_calls in its records)")
    return "".join(texts)


def _messages(value, field: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RecordError(field, "missing; expected a list of {role, content, loss_weight} messages")
    out = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise RecordError(where, f"expected a message object, got {type(message).__name__}")
        unknown = set(message) - {"role", "content", "loss_weight"}
        if unknown:
            raise RecordError(f"{where}.{sorted(unknown)[0]}", "a message key v1 samples do not have (expected "
                                                               "role, content, loss_weight)")
        weight = message.get("loss_weight", 1.0 if message.get("role") == "assistant" else 0.0)
        trained = 1.0 if message.get("role") == "assistant" else 0.0
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight != trained:
            raise RecordError(f"{where}.loss_weight", f"{weight!r}: posttrain trains assistant turns (1) and no "
                                                      f"other (0), so a {message.get('role')} turn needs {trained:g}")
        out.append({"role": message.get("role"), "content": _text(message.get("content"), f"{where}.content")})
    return out


def _refuse_others(row: dict, read: set[str], name: str, record: str) -> None:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    fields.check(row, name, read, record=record)


def to_conversation(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    _refuse_others(row, _SFT_FIELDS, "llamafactory-v1", "conversation")
    return validate_conversation({"messages": _messages(row.get("messages"), "messages")})


def to_pair(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    _refuse_others(row, _PAIR_FIELDS, "llamafactory-v1-pair", "preference")
    pair = {"chosen": _messages(row.get("chosen_messages"), "chosen_messages"),
            "rejected": _messages(row.get("rejected_messages"), "rejected_messages")}
    try:
        return preference.to_record(pair)
    except RecordError as e:
        side, _, rest = e.field.partition("[")
        raise RecordError(f"{side}_messages" + (f"[{rest}" if rest else ""), e.expected) from None


SFT = SimpleNamespace(RECORD="conversation", to_record=to_conversation, to_conversation=to_conversation,
                      detect=lambda row: False, from_record=None, from_conversation=None, UNKNOWN_FIELDS="refuse")
PAIR = SimpleNamespace(RECORD="preference", to_record=to_pair, detect=lambda row: False, from_record=None,
                       UNKNOWN_FIELDS="refuse")


def detect_kind(row) -> str | None:
    """Which of the two a first row is: what a v1 recipe trains (sft or dpo) follows from its data."""
    if not isinstance(row, dict):
        return None
    if "chosen_messages" in row:
        return "dpo"
    messages = row.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict) and \
            isinstance(messages[0].get("content"), list):
        return "sft"
    return None
