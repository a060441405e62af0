"""Clinical-trial rewards (seed 000, TrialPanorama), scored exactly as the original code scores them.

study_search (and study_search_think): -2 unless the response holds exactly
one <answer>...</answer> (the think variant also one <think>...</think>
before it); the answer is a PubMed Boolean query, run on the configured
backend (rewards/search); recall@100 over the relevant PMIDs; 0.1 + recall
when recall > 0, else 0 (also for an empty, untranslatable or failed query).

sample_size_estimation: -2 for a bad target or bad format (exactly one each
of <think>, </think>, <answer>, </answer>, in that order); the first number
of the answer (commas and spaces removed), 0 when there is none; 1.1 when
0.8 x target <= prediction <= 1.2 x target, otherwise 0.
"""

from __future__ import annotations

import json
import math

from posttrain.rewards.formatting import extract_answer, parse_number, response_part
from posttrain.rewards.registry import register
from posttrain.rewards.search import SearchUnavailable, search
from posttrain.rewards.search.query import QueryError

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
BAD_FORMAT = -2.0


def _ground_truth(value):
    # VERL parquet may hand the struct over as a JSON string
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def think_answer_format(text: str) -> bool:
    """Exactly one of each tag, in the order <think> </think> <answer> </answer>."""
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    positions = [text.index(tag) for tag in _TAGS]
    return positions == sorted(positions)


@register("think_answer_format")
def think_answer_format_reward(solution_str, ground_truth=None, extra_info=None) -> float:
    """1.0 when the response keeps the seed's format (one <think>, </think>, <answer>, </answer>, in order), else
    0.0 (format only)."""
    if not isinstance(solution_str, str):
        return 0.0
    return 1.0 if think_answer_format(response_part(solution_str)) else 0.0


@register("sample_size_estimation")
def sample_size_estimation(solution_str, ground_truth, extra_info=None) -> float:
    """1.1 when the <answer> is within ±20 % of ground_truth["target"], 0 when not, -2 for bad format or target."""
    ground_truth = _ground_truth(ground_truth)
    try:
        target = float(ground_truth["target"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: a target such as 10**400
        return BAD_FORMAT
    if not math.isfinite(target) or not isinstance(solution_str, str):
        return BAD_FORMAT
    if not think_answer_format(response_part(solution_str)):
        return BAD_FORMAT
    prediction = parse_number(extract_answer(solution_str))
    if prediction is None:
        return 0.0
    return 1.1 if 0.8 * target <= prediction <= 1.2 * target else 0.0


def _study_search(solution_str, ground_truth, think: bool) -> float:
    if not isinstance(solution_str, str):
        return BAD_FORMAT
    text = response_part(solution_str)
    tags = _TAGS if think else _TAGS[2:]
    if any(text.count(tag) != 1 for tag in tags):
        return BAD_FORMAT
    positions = [text.index(tag) for tag in tags]
    if positions != sorted(positions):
        return BAD_FORMAT
    ground_truth = _ground_truth(ground_truth)
    relevant = set(map(str, (ground_truth or {}).get("relevant_pmids") or [])) if isinstance(ground_truth, dict) else set()
    query = extract_answer(text)
    if not relevant or not query:
        return 0.0
    try:
        found = search(query, 100)  # recall@100: the seed retrieves 1,000 and keeps the top 100
    except QueryError:
        return 0.0
    except SearchUnavailable as e:  # the backend failed, not the query: 0 as the seed scores it, but logged
        e.warn_once()
        return 0.0
    recall = len(relevant.intersection(found)) / len(relevant)
    return 0.1 + recall if recall > 0 else 0.0


@register("study_search")
def study_search(solution_str, ground_truth, extra_info=None) -> float:
    """0.1 + recall@100 of the relevant PMIDs for the <answer> PubMed query (0 when none found), -2 for bad format."""
    return _study_search(solution_str, ground_truth, think=False)


@register("study_search_think")
def study_search_think(solution_str, ground_truth, extra_info=None) -> float:
    """study_search, with one <think>...</think> required before the <answer>."""
    return _study_search(solution_str, ground_truth, think=True)
