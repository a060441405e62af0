"""Rewards and metrics for judge models: RM-Gallery's generative judges (seed 004) and DataEva's agent judge (seed 002).

- `pairwise_preference`: the verdict is parsed as the seed parses it, in order:
  the content of the first <preference>…</preference> tag (A / RESPONSE A / ANSWER A -> A,
  B / RESPONSE B / ANSWER B -> B, TIE / EQUAL / SAME -> tie; then, as the seed's tag fallback,
  text containing RESPONSE A / RESPONSE B / EQUAL); if the tag is missing or says none of these,
  the last 5 lines, last first (a line that is "A" or contains RESPONSE A -> A, the same for B,
  one containing TIE or EQUAL -> tie); otherwise unknown. Reward 1.0 when the verdict equals the
  ground truth's `preferred` (A, B or tie), else 0.0 (unknown is always 0).
- `pointwise_score`: the integer in <score>…</score> (0..4); reward exp(-2·|pred − true| / 4)
  (1.0, 0.607, 0.368, 0.223, 0.135 for errors 0..4); 0.0 when the score is missing, not an
  integer, or outside 0..4, or the truth is not an integer in 0..4.
- `json_judge` (seed 002): the output must be one JSON object with the keys its evaluation type
  requires (clip: reasonableness_score, summary; category: scores{tool_use_quality,
  information_relevance, content_extraction, goal_achievement}, summary, reasoning; final:
  scores{task_completion, tool_use_quality, reasoning_coherence, problem_resolution,
  answer_correctness}, summary, reasoning), every score a number in 0..1. Reward 0.0 when it is
  not; else 1 − the mean absolute error of its scores against the reference's scores (so 1.0 for
  the reference scores exactly; a reference without readable scores leaves validity alone: 1.0).
  The ground truth is `{"evaluation_type": ..., "reference": <the reference JSON object or text>}`.

`judge_metrics` turns scored judge outputs into the evaluation figures: accuracy, the share of
unparsable outputs and, for pairwise records, position consistency over original/swapped pairs; beside
them the majority-class baseline, the accuracy of always answering the most common true label, which
held-out accuracy has to beat to show the judge read the responses at all.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

from posttrain.data.formats.judges import SWAP
from posttrain.rewards.formatting import tag_contents
from posttrain.rewards.registry import register

MAX_TAG_TEXT = 200  # a verdict is a word or two; longer tag contents are not read as one
VERDICTS = {"A": "A", "RESPONSE A": "A", "ANSWER A": "A", "B": "B", "RESPONSE B": "B", "ANSWER B": "B",
            "TIE": "tie", "EQUAL": "tie", "SAME": "tie"}


def parse_preference(text) -> str:
    """A, B, tie or unknown, in the seed's parsing order."""
    if not isinstance(text, str):
        return "unknown"
    match = tag_contents(text, "preference", ignore_case=True)
    if match:
        content = match[0].strip().upper()[:MAX_TAG_TEXT]
        if content in VERDICTS:
            return VERDICTS[content]
        if "RESPONSE A" in content:
            return "A"
        if "RESPONSE B" in content:
            return "B"
        if "EQUAL" in content:
            return "tie"
    for line in reversed(text.strip().split("\n")[-5:]):
        line = line.strip().upper()
        if line == "A" or "RESPONSE A" in line:
            return "A"
        if line == "B" or "RESPONSE B" in line:
            return "B"
        if "TIE" in line or "EQUAL" in line:
            return "tie"
    return "unknown"


def _truth_preference(ground_truth) -> str | None:
    value = ground_truth.get("preferred") if isinstance(ground_truth, dict) else ground_truth
    if not isinstance(value, str):
        return None
    return {"a": "A", "b": "B", "tie": "tie"}.get(value.strip().lower())


@register("pairwise_preference")
def pairwise_preference(solution_str, ground_truth, extra_info=None) -> float:
    """1.0 when the parsed verdict equals the ground truth's preferred response (A, B or tie), else 0.0."""
    truth = _truth_preference(ground_truth)
    predicted = parse_preference(solution_str)
    return 1.0 if truth is not None and predicted == truth else 0.0


def parse_score(text) -> int | None:
    """The integer 0..4 inside the first <score> tag, or None."""
    if not isinstance(text, str):
        return None
    match = tag_contents(text, "score", ignore_case=True)
    if not match:
        return None
    return _score_value(match[0].strip()[:MAX_TAG_TEXT])


def _score_value(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number) or not number.is_integer() or not 0 <= number <= 4:
        return None
    return int(number)


@register("pointwise_score")
def pointwise_score(solution_str, ground_truth, extra_info=None) -> float:
    """exp(-2·|pred − true| / 4); 0.0 when the prediction or the truth is not an integer in 0..4."""
    truth = ground_truth
    if isinstance(ground_truth, dict):
        truth = ground_truth.get("score", ground_truth.get("helpfulness"))
    true = _score_value(truth)
    predicted = parse_score(solution_str)
    if predicted is None or true is None:
        return 0.0
    return math.exp(-2.0 * abs(predicted - true) / 4.0)


# the keys each evaluation type's answer must have (seed 002's prompts), scores first
JSON_SCHEMAS = {
    "clip": {"scores": None, "top": ("reasonableness_score",), "text": ("summary",)},
    "category": {"scores": ("tool_use_quality", "information_relevance", "content_extraction", "goal_achievement"),
                 "top": (), "text": ("summary", "reasoning")},
    "final": {"scores": ("task_completion", "tool_use_quality", "reasoning_coherence", "problem_resolution",
                         "answer_correctness"), "top": (), "text": ("summary", "reasoning")},
}
MAX_JSON_CHARS = 100_000  # a judge's answer is a few hundred characters; parsing 1 MB of junk is not worth it
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _json_object(value):
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or len(value) > MAX_JSON_CHARS:
        return None
    text = value.strip()
    fenced = _FENCE.match(text)  # ```json ... ``` is how chat models often wrap JSON
    if fenced:
        text = fenced.group(1)
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _is_score(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def json_scores(answer, evaluation_type: str) -> dict | None:
    """The answer's scores by name when it is a valid JSON evaluation of `evaluation_type`, else None."""
    schema = JSON_SCHEMAS.get(evaluation_type)
    parsed = _json_object(answer)
    if schema is None or parsed is None:
        return None
    if any(not isinstance(parsed.get(key), str) for key in schema["text"]):
        return None
    scores = {key: parsed.get(key) for key in schema["top"]}
    if schema["scores"]:
        nested = parsed.get("scores")
        if not isinstance(nested, dict):
            return None
        scores.update({key: nested.get(key) for key in schema["scores"]})
    if not all(_is_score(v) for v in scores.values()):
        return None
    return {k: float(v) for k, v in scores.items()}


def _json_truth(ground_truth) -> tuple[str | None, object]:
    if not isinstance(ground_truth, dict):
        return None, None
    return ground_truth.get("evaluation_type"), ground_truth.get("reference")


@register("json_judge")
def json_judge(solution_str, ground_truth, extra_info=None) -> float:
    """0.0 for an invalid evaluation; else 1 − mean |score − reference score| over the type's scores."""
    kind, reference = _json_truth(ground_truth)
    if kind is None and isinstance(extra_info, dict):
        kind = extra_info.get("evaluation_type")
    scores = json_scores(solution_str, kind)
    if scores is None:
        return 0.0
    wanted = json_scores(reference, kind)
    if wanted is None:
        return 1.0
    return 1.0 - sum(abs(scores[k] - wanted[k]) for k in scores) / len(scores)


# judge_metrics' figures of the data rather than of the judge: how much there was, and what always answering
# its most common label scores. They are no column of a model and get no interval or paired comparison.
DATA_FIGURES = ("count", "pairs", "majority_baseline")


def judge_metrics(records) -> dict:
    """Evaluation figures for a judge from records carrying the judge's `output` beside their
    `data_source`, `ground_truth` and `extra_info` (as the rl_prompt records the converters write).

    Returns {count, accuracy, unparsable} over all records, plus, for pairwise records, the number of
    complete original/swapped pairs and `position_consistency`: the share of those pairs whose two
    verdicts name the same response (A on one order is B on the other; tie stays tie). For
    pointwise records, accuracy counts exact scores and `mean_reward` is the mean of the reward;
    for json_judge records, `mean_abs_error` is the mean score error of the valid answers.

    `majority_baseline` is the accuracy of a judge that always gives the most common true label: of each
    source (A/B/tie; a score 0..4; for json_judge, of each evaluation type, whose answers have other keys,
    a reference score set), counted as accuracy counts it (a record without a readable truth is never
    right) and over all records, so mixed sources weigh as they do in accuracy.
    """
    count = correct = unparsable = 0
    rewards, errors = [], []
    labels: dict = {}  # source (for json_judge, with its evaluation type) -> how often each true label occurs
    verdicts: dict[str, dict[bool, str]] = {}
    for record in records:
        source, output = record.get("data_source"), record.get("output")
        truth, extra = record.get("ground_truth"), record.get("extra_info") or {}
        count += 1
        if source == "pairwise_preference":
            verdict, group, true = parse_preference(output), source, _truth_preference(truth)
            unparsable += verdict == "unknown"
            correct += verdict != "unknown" and verdict == true
            if "pair_id" in extra:
                verdicts.setdefault(str(extra["pair_id"]), {})[bool(extra.get("swapped"))] = verdict
        elif source == "pointwise_score":
            predicted = parse_score(output)
            unparsable += predicted is None
            group, true = source, _score_value(truth.get("score") if isinstance(truth, dict) else truth)
            correct += predicted is not None and predicted == true
            rewards.append(pointwise_score(output, truth))
        elif source == "json_judge":
            kind, reference = _json_truth(truth)
            scores, wanted = json_scores(output, kind), json_scores(reference, kind)
            unparsable += scores is None
            reward = json_judge(output, truth)
            rewards.append(reward)
            if scores is not None and wanted is not None:
                errors.append(1.0 - reward)
                correct += reward == 1.0
            # each evaluation type is its own set of labels (its answers have other keys); only a readable
            # reference can be matched exactly, and answering it scores 1.0, which is what `correct` counts
            group, true = (source, kind), None if wanted is None else tuple(sorted(wanted.items()))
        else:
            raise ValueError(f"judge_metrics: data_source {source!r}; expected pairwise_preference, "
                             "pointwise_score or json_judge")
        if true is not None:
            labels.setdefault(group, Counter())[true] += 1
    result = {"count": count, "accuracy": correct / count if count else 0.0,
              "unparsable": unparsable / count if count else 0.0}
    majority = sum(max(counter.values()) for counter in labels.values())
    result["majority_baseline"] = majority / count if count else 0.0
    pairs = [v for v in verdicts.values() if len(v) == 2]
    if verdicts:
        same = sum(1 for v in pairs if v[False] != "unknown" and SWAP.get(v[False]) == v[True])
        result.update(pairs=len(pairs), position_consistency=same / len(pairs) if pairs else 0.0)
    if rewards:
        result["mean_reward"] = sum(rewards) / len(rewards)
    if errors:
        result["mean_abs_error"] = sum(errors) / len(errors)
    return result
