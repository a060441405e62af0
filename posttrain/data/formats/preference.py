"""Preference pairs: `chosen` and `rejected`, with or without a shared `prompt`.

Reads the shapes preference data comes in and makes `preference` records:
TRL's explicit-prompt form (`prompt` + `chosen` + `rejected`, strings or
messages), its implicit form (`chosen` and `rejected` are whole
conversations that share their opening turns, which become the prompt), and
LLaMA-Factory's ranking rows (alpaca `instruction`/`input` + `chosen`/
`rejected` strings, or sharegpt `conversations` + `chosen`/`rejected`
turns), with the entry's `columns`/`tags` honoured.

Fields (UNKNOWN_FIELDS = "refuse"): chosen, rejected, tie, margin and the
prompt's columns (prompt or instruction, input and system; or the sharegpt
messages and system) are read; any other field is a RecordError naming it,
bookkeeping fields (id, source, ...) are ignored with a warning. A tool list
is refused too: preference records hold none, and a pair judged with tools
in view is not the same pair without them.
"""

from __future__ import annotations

from posttrain.data.formats import fields, sharegpt
from posttrain.data.records import validate_preference
from posttrain.errors import RecordError

RECORD = "preference"
UNKNOWN_FIELDS = "refuse"


def detect(row: dict) -> bool:
    return "chosen" in row and "rejected" in row


def fields_read(row: dict, columns: dict | None = None) -> set[str]:
    """The row fields this format reads under `columns`: which depends on the row's layout."""
    cols = {"chosen": "chosen", "rejected": "rejected", **(columns or {})}
    reads = {cols["chosen"], cols["rejected"], "tie", "margin", cols.get("system", "system")}
    messages_column = cols.get("messages", "conversations")
    if messages_column in row:
        return reads | {messages_column}
    return reads | {cols.get("prompt", "instruction" if "instruction" in row else "prompt"), cols.get("query", "input")}


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    fields.check(row, "preference", fields_read(row, columns), record=RECORD, columns=columns)
    cols = {"chosen": "chosen", "rejected": "rejected", **(columns or {})}
    chosen, rejected = row.get(cols["chosen"]), row.get(cols["rejected"])
    for key, value in ((cols["chosen"], chosen), (cols["rejected"], rejected)):
        if value is None:
            raise RecordError(key, "missing; expected a string or a list of messages")
    extra = {k: row[k] for k in ("tie", "margin") if k in row}
    messages_column = cols.get("messages", "conversations")
    if messages_column in row:  # LLaMA-Factory sharegpt ranking: the prompt turns, then one turn each
        return _sharegpt(row, messages_column, cols, tags, extra)
    prompt_column = cols.get("prompt", "instruction" if "instruction" in row else "prompt")
    prompt = row.get(prompt_column)
    query = row.get(cols.get("query", "input"))
    if isinstance(prompt, str) and isinstance(query, str) and query.strip():
        prompt = "\n".join(part for part in (prompt, query) if part)  # LLaMA-Factory joins them with a newline
    system = row.get(cols.get("system", "system"))
    if prompt is None and isinstance(chosen, list) and isinstance(rejected, list):
        prompt, chosen, rejected = _split_shared(chosen, rejected, cols)
    elif isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}] if prompt.strip() else []
    if isinstance(system, str) and system and prompt and prompt[0].get("role") != "system":
        prompt = [{"role": "system", "content": system}, *prompt]
    return validate_preference({"prompt": prompt, "chosen": chosen, "rejected": rejected, **extra})


def _split_shared(chosen: list, rejected: list, cols: dict) -> tuple[list, list, list]:
    """TRL's implicit prompt: the turns both conversations open with are the prompt."""
    if chosen == rejected:
        raise RecordError(cols["chosen"], "chosen and rejected are the same conversation; expected different answers")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    # the responses start at the first assistant turn after the shared part
    while shared > 0 and isinstance(chosen[shared - 1], dict) and chosen[shared - 1].get("role") == "assistant":
        shared -= 1
    if shared == len(chosen) or shared == len(rejected):
        raise RecordError(cols["chosen"], "one conversation is the other's opening; expected an answer in each")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _sharegpt(row: dict, column: str, cols: dict, tags: dict | None, extra: dict) -> dict:
    turns = row[column]
    if not isinstance(turns, list):
        raise RecordError(column, "expected a list of messages")
    out = {}
    for key in ("chosen", "rejected"):
        turn = row[cols[key]]
        if not isinstance(turn, dict):
            raise RecordError(cols[key], "expected one assistant turn ({from, value}) after the conversation")
        try:
            messages = sharegpt.to_conversation({**row, column: [*turns, turn]}, cols, tags)["messages"]
        except RecordError as e:
            if e.field.startswith(f"{column}[{len(turns)}]"):
                raise RecordError(cols[key] + e.field[len(f"{column}[{len(turns)}]"):], e.expected) from None
            raise
        out["prompt"], out[key] = messages[:-1], messages[-1:]
    return validate_preference({**out, **extra})


def from_record(record: dict) -> dict:
    record = validate_preference(record)
    out = {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"]}
    if record["tie"]:
        out["tie"] = True
    if record["margin"] is not None:
        out["margin"] = record["margin"]
    return out
