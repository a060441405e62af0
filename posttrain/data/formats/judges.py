"""RM-Gallery rows (seed 004) -> GRPO prompts for generative judges, with the seed's prompt layout.

A row is `{"input": messages, "output": [{"answer": {"content", "label": {...}}}, ...],
"metadata": {"preferred": "A"|"B"|"tie", ...}, "source"}` (RM-Gallery's DataSample, parquet
or jsonl; `input`/`output`/`metadata` may be JSON strings as parquet stores them).

- rm-gallery-pairwise: the first two outputs become "Response A" and "Response B"; the label is
  `metadata.preferred`, else read from the outputs' labels (`is_preferred`, or the larger
  `preference_score`; equal scores are a tie). Each labelled pair becomes TWO rl_prompt records,
  the original order and the swapped one with the label swapped too (A<->B, tie stays), so the
  judge cannot learn a position bias; `extra_info` keeps the pair id and `swapped` so evaluation
  can measure position consistency. data_source `pairwise_preference`.
- rm-gallery-pointwise: one record per output with a `helpfulness` (or `score`) label 0..4 in its
  `answer.label`; the judge answers `<score>N</score>`. data_source `pointwise_score`.

Prompts stay plain messages: the chat template is applied once, when training. A query message's
role is written into a multi-turn prompt, so it must be system, user, assistant or tool (a missing
role is user); another value ({}, a number) is a RecordError naming it.

Fields (UNKNOWN_FIELDS = "refuse", both formats): input, output and source
are read, and by the pairwise format metadata (the preferred side) and
unique_id or id (the pair's id); bookkeeping fields (task_category, and the
pointwise format's metadata and unique_id) are ignored with a warning; any
other field is a RecordError naming it.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

from posttrain.data.formats import fields
from posttrain.data.records import ROLES, validate_rl_prompt
from posttrain.errors import RecordError

PAIRWISE_TASK = "Please choose the better response."
PAIRWISE_REQUIREMENT = (
    "Note: Ensure all outputs are placed within the tags like <tag> </tag> as required!!!\n"
    "<reason>\nyour reasoning trace\n</reason>\n"
    "<preference>\nwhich response is better: A, B, or tie\n</preference>"
)
POINTWISE_TASK = (
    "Your task is to evaluate the helpfulness of the answer to the query, on a scale from 0 (not helpful) "
    "to 4 (very helpful)."
)
POINTWISE_REQUIREMENT = (
    "Note: Ensure all outputs are placed within the tags like <tag> </tag> as required!!!\n"
    "<reason>\nyour reasoning trace\n</reason>\n"
    "<score>\nthe helpfulness score, an integer from 0 to 4\n</score>"
)
SWAP = {"A": "B", "B": "A", "tie": "tie"}
_READS = ("input", "output", "source")


def pairwise_prompt(query: str, response_a: str, response_b: str) -> str:
    """The seed's layout: task description, query, Response A, Response B, output requirement."""
    return (f"# Task Description\n{PAIRWISE_TASK}\n\n# Query\n{query}\n\n# Response A\n{response_a}\n\n"
            f"# Response B\n{response_b}\n\n# Output Requirement\n{PAIRWISE_REQUIREMENT}\n")


def pointwise_prompt(query: str, answer: str) -> str:
    return (f"# Task Description\n{POINTWISE_TASK}\n\n# Query\n{query}\n\n# Answer\n{answer}\n\n"
            f"# Output Requirement\n{POINTWISE_REQUIREMENT}\n")


def _field(row: dict, key: str, expected_type, expected: str):
    value = row.get(key)
    if isinstance(value, str) and expected_type is not str:
        try:  # RM-Gallery's parquet files store nested fields as JSON strings
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RecordError(key, f"a string that is not JSON; expected {expected}") from None
    if not isinstance(value, expected_type):
        raise RecordError(key, f"missing or {type(value).__name__}; expected {expected}")
    return value


def _query(row: dict) -> str:
    messages = _field(row, "input", list, "a list of messages (the query)")
    for i, message in enumerate(messages):  # the role is written into the prompt: "{}: ..." would be trained on
        if not isinstance(message, dict):
            raise RecordError(f"input[{i}]", f"expected a message {{role, content}}, got {type(message).__name__}")
        role = message.get("role", "user")
        if not isinstance(role, str) or role not in ROLES:
            raise RecordError(f"input[{i}].role", f"expected one of {', '.join(ROLES)}, got {role!r}")
        if message.get("content") is not None and not isinstance(message["content"], str):
            raise RecordError(f"input[{i}].content", f"expected text, got {type(message['content']).__name__}")
    turns = [m for m in messages if isinstance(m.get("content"), str)]
    if not turns or not any(m["content"].strip() for m in turns):
        raise RecordError("input", "no message with text content; expected [{role, content}]")
    if len(turns) == 1:
        return turns[0]["content"].strip()
    # a multi-turn query keeps who said what, as RM-Gallery's formatter does
    return "\n".join(f"{m.get('role', 'user')}: {m['content'].strip()}" for m in turns)


def _answers(row: dict, at_least: int) -> list[dict]:
    outputs = _field(row, "output", list, "a list of responses [{answer: {content, label}}]")
    answers = []
    for i, out in enumerate(outputs):
        answer = out.get("answer") if isinstance(out, dict) else None
        if not isinstance(answer, dict) or not isinstance(answer.get("content"), str):
            raise RecordError(f"output[{i}].answer.content", "missing; expected the response text")
        label = answer.get("label") or {}
        if not isinstance(label, dict):
            raise RecordError(f"output[{i}].answer.label", f"expected an object, got {type(label).__name__}")
        answers.append({"content": answer["content"], "label": label})
    if len(answers) < at_least:
        raise RecordError("output", f"{len(answers)} responses; expected at least {at_least}")
    return answers


def _preferred(row: dict, answers: list[dict]) -> str:
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = _field(row, "metadata", dict, "an object")
    preferred = metadata.get("preferred") if isinstance(metadata, dict) else None
    if preferred is not None:
        key = str(preferred).strip()
        key = {"a": "A", "b": "B", "tie": "tie"}.get(key.lower())
        if key is None:
            raise RecordError("metadata.preferred", f"expected A, B or tie, got {preferred!r}")
        return key
    a, b = answers[0]["label"], answers[1]["label"]
    if "is_preferred" in a or "is_preferred" in b:
        for i, label in enumerate((a, b)):  # bool() would make any list or string a preference
            if label.get("is_preferred") is not None and not isinstance(label["is_preferred"], bool):
                raise RecordError(f"output[{i}].answer.label.is_preferred",
                                  f"expected true or false, got {label['is_preferred']!r}")
        pa, pb = bool(a.get("is_preferred")), bool(b.get("is_preferred"))
        return "tie" if pa == pb else ("A" if pa else "B")
    if "preference_score" in a and "preference_score" in b:
        try:
            sa, sb = float(a["preference_score"]), float(b["preference_score"])
        except (TypeError, ValueError):
            raise RecordError("output[].answer.label.preference_score", "expected numbers") from None
        return "tie" if sa == sb else ("A" if sa > sb else "B")
    raise RecordError("metadata.preferred", "missing, and the outputs' labels have no is_preferred or "
                      "preference_score; expected A, B or tie")


def pair_id(row: dict, query: str, a: str, b: str) -> str:
    """A stable id for the pair: the row's own id when it has one, else a hash of its texts."""
    given = row.get("unique_id") or row.get("id")
    if isinstance(given, (str, int)) and str(given):
        return str(given)
    return hashlib.sha1(json.dumps([query, a, b]).encode()).hexdigest()[:16]


def pairwise(row: dict, columns=None, tags=None) -> list[dict]:
    """One RM-Gallery pair -> [original, swapped] rl_prompt records."""
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    # the pair's id is unique_id, else id (pair_id); the one not used is bookkeeping
    ids = ("unique_id",) if row.get("unique_id") else ("unique_id", "id")
    fields.check(row, "rm-gallery-pairwise", _READS + ("metadata", *ids), record="rl_prompt")
    query = _query(row)
    answers = _answers(row, 2)
    preferred = _preferred(row, answers)
    a, b = answers[0]["content"], answers[1]["content"]
    pid = pair_id(row, query, a, b)
    source = row.get("source") if isinstance(row.get("source"), str) else ""
    records = []
    for swapped, (first, second, label) in enumerate([(a, b, preferred), (b, a, SWAP[preferred])]):
        records.append(validate_rl_prompt({
            "prompt": [{"role": "user", "content": pairwise_prompt(query, first, second)}],
            "data_source": "pairwise_preference",
            "ground_truth": {"preferred": label},
            "extra_info": {"pair_id": pid, "swapped": bool(swapped), "source": source}}))
    return records


def _score(label: dict, i: int) -> int | None:
    for key in ("helpfulness", "score"):
        if key in label:
            value = label[key]
            try:
                if isinstance(value, bool):  # float(True) is 1.0, a score nobody gave
                    raise TypeError
                number = float(value)
            except (TypeError, ValueError):
                raise RecordError(f"output[{i}].answer.label.{key}",
                                  f"expected an integer 0-4, got {value!r}") from None
            if not number.is_integer() or not 0 <= number <= 4:
                raise RecordError(f"output[{i}].answer.label.{key}", f"expected an integer 0-4, got {value!r}")
            return int(number)
    return None


def pointwise(row: dict, columns=None, tags=None) -> list[dict]:
    """One RM-Gallery row -> one rl_prompt per output that carries a 0-4 helpfulness label."""
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    fields.check(row, "rm-gallery-pointwise", _READS, record="rl_prompt")
    query = _query(row)
    records = []
    for i, answer in enumerate(_answers(row, 1)):
        score = _score(answer["label"], i)
        if score is None:
            continue
        records.append(validate_rl_prompt({
            "prompt": [{"role": "user", "content": pointwise_prompt(query, answer["content"])}],
            "data_source": "pointwise_score", "ground_truth": {"score": score},
            "extra_info": {"source": row.get("source") if isinstance(row.get("source"), str) else "",
                           "output_index": i}}))
    if not records:
        raise RecordError("output[].answer.label.helpfulness", "no output has a score; expected an integer 0-4")
    return records


def _format(convert) -> SimpleNamespace:
    # input-only formats: their records are written as rl_prompt (or verl)
    return SimpleNamespace(RECORD="rl_prompt", to_record=convert, detect=lambda row: False, from_record=None,
                           UNKNOWN_FIELDS="refuse")


PAIRWISE = _format(pairwise)
POINTWISE = _format(pointwise)
