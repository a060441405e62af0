"""DataEva's agent-evaluation rows (seed 002) -> conversations for an agent judge.

A row of `finetune.jsonl` is `{"conversations": [{"from": "human", "value"}, {"from": "gpt", "value"}],
"metadata": {"model_name", "provider", "task_id", "evaluation_type": clip|category|final,
"clip_number", "category", "timestamp"}}`. The judge sees the human turn behind the seed's prefix
`[EVAL_TYPE: x] [MODEL: y] [TASK: z] [CATEGORY: c] ` (format `agent-eval`; `agent-eval-no-metadata`
leaves it off) and answers with the gpt turn, a JSON evaluation. `agent-eval-judge` makes the
same row an rl_prompt for the `json_judge` reward, the gpt turn its reference; it also reads the rows of the
variant files (`instruction`, `output`, `metadata`), so a judge is evaluated on a held-out `_eval.json` as it
was trained. `posttrain data variants` writes the seed's dataset variants from the same rows
(posttrain/data/variants.py).

Fields (UNKNOWN_FIELDS = "refuse", all three formats): conversations and
metadata are read (and a variant file's instruction and output by
agent-eval-judge); bookkeeping fields (id, source, ...) are ignored with a
warning; any other field is a RecordError naming it. The metadata's
model_name, task_id and category are written into the prompt's prefix, so
each is text or a number; another value (an object, NaN) is refused too.
"""

from __future__ import annotations

from types import SimpleNamespace

from posttrain.data.formats import fields
from posttrain.data.records import validate_conversation, validate_rl_prompt
from posttrain.errors import RecordError

RECORD = "conversation"
UNKNOWN_FIELDS = "refuse"
EVALUATION_TYPES = ("clip", "category", "final")


def detect(row: dict) -> bool:
    metadata = row.get("metadata")
    return "conversations" in row and isinstance(metadata, dict) and "evaluation_type" in metadata


def metadata_of(row) -> dict:
    """The row's metadata, checked: evaluation_type must be one the judge knows."""
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    metadata = row.get("metadata")
    if not isinstance(metadata, dict):
        raise RecordError("metadata", "missing; expected {model_name, task_id, evaluation_type, ...}")
    kind = metadata.get("evaluation_type")
    if not isinstance(kind, str) or kind not in EVALUATION_TYPES:
        raise RecordError("metadata.evaluation_type", f"expected one of {', '.join(EVALUATION_TYPES)}, got {kind!r}")
    for key in ("model_name", "task_id", "category"):  # written into the judge's prompt, so text (or a number)
        value = metadata.get(key)
        if value not in (None, "") and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise RecordError(f"metadata.{key}", f"expected text, got {value!r}")
    return metadata


def prefix(metadata: dict) -> str:
    """The seed's metadata prefix; a field that is missing or empty is left out, as the seed does."""
    parts = [(label, metadata.get(key)) for label, key in
             (("EVAL_TYPE", "evaluation_type"), ("MODEL", "model_name"), ("TASK", "task_id"), ("CATEGORY", "category"))]
    return "".join(f"[{label}: {value}] " for label, value in parts if value not in (None, ""))


def instruction_output(row, *, with_metadata: bool = True) -> tuple[str, str]:
    """(instruction, output) of a row: the human turn (prefixed) and the gpt turn."""
    metadata = metadata_of(row)
    turns = row.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise RecordError("conversations", "expected a human turn and a gpt turn")
    texts = {}
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in ("human", "gpt"):
            raise RecordError(f"conversations[{i}].from", "expected human or gpt")
        if not isinstance(turn.get("value"), str) or not turn["value"].strip():
            raise RecordError(f"conversations[{i}].value", "missing or empty; expected text")
        texts.setdefault(turn["from"], turn["value"])  # the first of each, as the seed takes them
    for side in ("human", "gpt"):
        if side not in texts:
            raise RecordError("conversations", f"no {side} turn")
    instruction = (prefix(metadata) if with_metadata else "") + texts["human"]
    return instruction, texts["gpt"]


def to_conversation(row, columns=None, tags=None, *, with_metadata: bool = True) -> dict:
    fields.check(row, "agent-eval" if with_metadata else "agent-eval-no-metadata", ("conversations", "metadata"))
    instruction, output = instruction_output(row, with_metadata=with_metadata)
    return validate_conversation({"messages": [{"role": "user", "content": instruction},
                                               {"role": "assistant", "content": output}]})


to_record = to_conversation

NO_METADATA = SimpleNamespace(
    RECORD=RECORD, detect=lambda row: False, from_record=None, UNKNOWN_FIELDS=UNKNOWN_FIELDS,
    to_record=lambda row, columns=None, tags=None: to_conversation(row, with_metadata=False))


def _variant_fields(row) -> tuple[str, str]:
    """(instruction, output) of a row of a `posttrain data variants` file: the prompt is already as the judge
    was trained on it (prefixed, or not with --no-metadata), so it is taken as is."""
    texts = []
    for key in ("instruction", "output"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise RecordError(key, "missing or empty; expected text")
        texts.append(row[key])
    return texts[0], texts[1]


def to_rl_prompt(row, columns=None, tags=None) -> dict:
    """The same row as an rl_prompt scored by `json_judge`: the gpt turn becomes the reference evaluation,
    so a judge's answers (in GRPO, or generated for evaluation) are checked for JSON validity and score error.
    A row of a variant file (`instruction`, `output`, `metadata`; what `posttrain data variants` writes, its
    held-out `_eval.json` included) reads the same way."""
    metadata = metadata_of(row)
    variant = "conversations" not in row and "instruction" in row
    fields.check(row, "agent-eval-judge", ("instruction", "output", "metadata") if variant else
                 ("conversations", "metadata"), record="rl_prompt")
    instruction, output = _variant_fields(row) if variant else instruction_output(row)
    return validate_rl_prompt({
        "prompt": [{"role": "user", "content": instruction}], "data_source": "json_judge",
        "ground_truth": {"evaluation_type": metadata["evaluation_type"], "reference": output},
        "extra_info": {key: metadata.get(key) for key in ("model_name", "task_id", "evaluation_type")}})


JUDGE_PROMPTS = SimpleNamespace(RECORD="rl_prompt", detect=lambda row: False, from_record=None, to_record=to_rl_prompt,
                                UNKNOWN_FIELDS=UNKNOWN_FIELDS)
