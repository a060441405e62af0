"""TrialPanorama source records (seed 000) -> RL prompts and SFT conversations, with the seed's prompts.

study search: {"inputs": {"background", "objectives", "selection criteria"}, "labels": [pmid],
"metadata": {"review_pmid"}} -> an rl_prompt scored by `study_search`; a PMID is digits, as text or a
whole number, and anything else (an object, NaN, true) is a RecordError naming it, not a PMID string.
sample size: {"question", "answer", "answer_type", "trial_id", "pmid", "explanation"} -> an rl_prompt
scored by `sample_size_estimation`, or (trialpanorama-sample-size-sft) a conversation whose answer is
the explanation inside <think> plus <answer>N</answer>.

The original put chat-template tokens inside the prompt text and the RL
loader templated it again; here prompts stay plain messages and the
tokenizer's template is applied once, when training.

Fields (UNKNOWN_FIELDS = "refuse", each format): the fields above are read;
the sample-size RL prompt ignores `explanation` (the worked answer the -sft
variant trains on) and the -sft conversation ignores `answer_type`,
`trial_id` and `pmid` (the RL ground truth's details), with a warning, as it
does bookkeeping fields; any other field is a RecordError naming it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from posttrain.data.formats import fields
from posttrain.data.records import validate_conversation, validate_rl_prompt
from posttrain.errors import RecordError

STUDY_SEARCH_PROMPT = (
    "You are an expert in systematic reviews. Create a PubMed search query for a systematic review with the "
    "following background, objectives and selection criteria.\n\n"
    "Background: {background}\n\nObjectives: {objectives}\n\nSelection criteria: {criteria}\n\n"
    "Write the query with the Boolean operators AND and OR and parentheses. Put the query inside "
    "<answer></answer> and write nothing after </answer>."
)
SAMPLE_SIZE_PROMPT = (
    "Estimate the sample size of this clinical trial design. Think step by step.\n\n{question}\n\n"
    "Put all your reasoning in one <think></think> block, then give the total number of participants as "
    "<answer>N</answer>."
)


def _text(row: dict, key: str, where: str | None = None) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(where or key, "missing or empty; expected text")
    return value.strip()


_SAMPLE_SIZE_FIELDS = ("question", "answer", "answer_type", "trial_id", "pmid")
_SFT_IGNORES = {key: "the RL ground truth's details, not the conversation's" for key in _SAMPLE_SIZE_FIELDS[2:]}


def _object(row) -> dict:
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    return row


def _pmid(value, field: str) -> str:
    """A PMID as the study_search reward compares it, digits: given as text or as a whole number (a float column
    of parquet or pandas holds 30000239.0). Anything else would become a PMID string no search ever returns."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return value.strip()
    raise RecordError(field, f"expected a PMID (digits, as text or a whole number), got {value!r}")


def study_search(row: dict, columns=None, tags=None) -> dict:
    fields.check(_object(row), "trialpanorama-study-search", ("inputs", "labels", "metadata"), record="rl_prompt")
    inputs = row.get("inputs")
    if not isinstance(inputs, dict):
        raise RecordError("inputs", "missing; expected {background, objectives, selection criteria}")
    prompt = STUDY_SEARCH_PROMPT.format(
        background=_text(inputs, "background", "inputs.background"),
        objectives=_text(inputs, "objectives", "inputs.objectives"),
        criteria=_text(inputs, "selection criteria", "inputs.selection criteria"))
    labels = row.get("labels")
    if not isinstance(labels, list) or not labels:
        raise RecordError("labels", "expected a non-empty list of relevant PMIDs")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RecordError("metadata", f"expected an object {{review_pmid}}, got {type(metadata).__name__}")
    review = metadata.get("review_pmid")
    review = "" if review is None or review == "" else _pmid(review, "metadata.review_pmid")
    return validate_rl_prompt({
        "prompt": [{"role": "user", "content": prompt}], "data_source": "study_search",
        "ground_truth": {"relevant_pmids": [_pmid(p, f"labels[{i}]") for i, p in enumerate(labels)],
                         "review_pmid": review},
        "extra_info": {"ability": "study_search"}})


def _target(row: dict) -> float:
    try:
        target = float(str(row.get("answer")).replace(",", ""))
    except ValueError:
        raise RecordError("answer", f"expected a number, got {row.get('answer')!r}") from None
    if not math.isfinite(target):
        raise RecordError("answer", f"expected a finite number, got {row.get('answer')!r}")
    return target


def sample_size(row: dict, columns=None, tags=None) -> dict:
    fields.check(_object(row), "trialpanorama-sample-size", _SAMPLE_SIZE_FIELDS, record="rl_prompt",
                 ignores={**fields.BOOKKEEPING, "explanation": "the worked answer the -sft variant trains on"})
    target = _target(row)
    return validate_rl_prompt({
        "prompt": [{"role": "user", "content": SAMPLE_SIZE_PROMPT.format(question=_text(row, "question"))}],
        "data_source": "sample_size_estimation",
        "ground_truth": {"target": target, "answer_type": row.get("answer_type"), "trial_id": row.get("trial_id"),
                         "pmid": row.get("pmid")},
        "extra_info": {"ability": "sample_size_estimation"}})


def sample_size_sft(row: dict, columns=None, tags=None) -> dict:
    fields.check(_object(row), "trialpanorama-sample-size-sft", ("question", "answer", "explanation"),
                 ignores={**fields.BOOKKEEPING, **_SFT_IGNORES})
    target = _target(row)
    number = int(target) if target.is_integer() else target
    answer = f"<think>{_text(row, 'explanation')}</think><answer>{number}</answer>"
    return validate_conversation({"messages": [
        {"role": "user", "content": SAMPLE_SIZE_PROMPT.format(question=_text(row, "question"))},
        {"role": "assistant", "content": answer}]})


def _format(record: str, convert) -> SimpleNamespace:
    return SimpleNamespace(RECORD=record, to_record=convert, detect=lambda row: False, from_record=None,
                           UNKNOWN_FIELDS="refuse")


STUDY_SEARCH = _format("rl_prompt", study_search)
SAMPLE_SIZE = _format("rl_prompt", sample_size)
SAMPLE_SIZE_SFT = _format("conversation", sample_size_sft)
