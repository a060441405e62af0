"""RM-Gallery rows (modelscope/RM-Gallery, seed 004) as preference records.

A row holds `input` (messages), `output` (responses, each with
`answer.content` and `answer.label`) and `metadata`. Which response is
preferred comes, in order, from `answer.label.is_preferred`, from the higher
`preference_score` (or `preference_strength`), or from `metadata.preferred`
(A, B or tie, naming output[0] and output[1]). Equal scores or `tie` make a
tie record: kept for judges, dropped by the Bradley-Terry stage.

Fields (UNKNOWN_FIELDS = "refuse"): input, output and metadata are read;
RM-Gallery's unique_id, source and task_category (bookkeeping) are ignored
with a warning; any other field is a RecordError naming it.
"""

from __future__ import annotations

from posttrain.data.formats import fields
from posttrain.data.records import validate_preference
from posttrain.errors import RecordError

RECORD = "preference"
UNKNOWN_FIELDS = "refuse"


def detect(row: dict) -> bool:
    return "input" in row and isinstance(row.get("output"), list)


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    fields.check(row, "rm-gallery", ("input", "output", "metadata"), record=RECORD)
    prompt = row.get("input")
    if not isinstance(prompt, list):
        raise RecordError("input", "expected a list of {role, content} messages")
    outputs = row.get("output")
    if not isinstance(outputs, list) or len(outputs) < 2:
        raise RecordError("output", "expected a list of at least two responses")
    answers, labels = [], []
    for i, item in enumerate(outputs[:2]):
        answer = item.get("answer") if isinstance(item, dict) else None
        if not isinstance(answer, dict):
            raise RecordError(f"output[{i}].answer", "expected an object with content and label")
        content = answer.get("content")
        if not isinstance(content, str) or not content.strip():
            raise RecordError(f"output[{i}].answer.content", "expected non-empty text")
        label = answer.get("label") or {}
        if not isinstance(label, dict):
            raise RecordError(f"output[{i}].answer.label", f"expected an object, got {type(label).__name__}")
        answers.append(content)
        labels.append(label)
    first = _first_preferred(labels, (row.get("metadata") or {}))
    if first is None:
        raise RecordError("output[0].answer.label", "expected is_preferred, preference_score or preference_strength "
                          "on the responses, or metadata.preferred A, B or tie")
    tie = first == "tie"
    chosen, rejected = (answers[0], answers[1]) if first in (True, "tie") else (answers[1], answers[0])
    return validate_preference({"prompt": prompt, "chosen": chosen, "rejected": rejected, "tie": tie})


def _first_preferred(labels: list[dict], metadata: dict):
    """True when output[0] is preferred, False for output[1], "tie", or None when nothing says."""
    flags = [label.get("is_preferred") for label in labels]
    if all(isinstance(f, bool) for f in flags):
        return "tie" if flags[0] == flags[1] else flags[0]
    for key in ("preference_score", "preference_strength"):
        scores = [label.get(key) for label in labels]
        if all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
            return "tie" if scores[0] == scores[1] else scores[0] > scores[1]
    preferred = str(metadata.get("preferred", "")).strip().upper() if isinstance(metadata, dict) else ""
    return {"A": True, "B": False, "TIE": "tie"}.get(preferred)


def from_record(record: dict) -> dict:
    record = validate_preference(record)
    # a tie: both preferred, which reads back as a tie
    out = [{"answer": {"role": "assistant", "content": r[-1]["content"], "label": {"is_preferred": p}}}
           for r, p in ((record["chosen"], True), (record["rejected"], record["tie"]))]
    preferred = "tie" if record["tie"] else "A"
    return {"input": record["prompt"], "output": out, "metadata": {"preferred": preferred}}
