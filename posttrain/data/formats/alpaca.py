"""Alpaca format: `instruction`, `input`, `output`, optional `system` and `history`.

LLaMA-Factory's default format, and the shape of most instruction sets
(including the instruction/input/output medical sets). The column names can
be remapped with LLaMA-Factory's `columns` (prompt, query, response, system,
history), so a `dataset_info.json` entry works unchanged.
"""

from __future__ import annotations

from posttrain.data.records import validate_conversation
from posttrain.errors import RecordError

RECORD = "conversation"
DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": "system",
                   "history": "history"}


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
    return validate_conversation({"messages": messages})


def from_conversation(record: dict) -> dict:
    messages = validate_conversation(record)["messages"]
    out = {}
    if messages[0]["role"] == "system":
        if messages[0]["content"]:
            out["system"] = messages[0]["content"]
        messages = messages[1:]
    if any(m["role"] == "tool" for m in messages):
        raise RecordError("messages", "alpaca cannot hold tool messages; convert to sharegpt or openai")
    pairs = [[messages[i]["content"], messages[i + 1]["content"]] for i in range(0, len(messages), 2)]
    *history, (instruction, output) = pairs
    record = {"instruction": instruction, "input": "", "output": output}
    if "system" in out:
        record["system"] = out["system"]
    if history:
        record["history"] = history
    return record


to_record = to_conversation
