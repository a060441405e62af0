"""The medical dialogue reward (seed 001's GRPO script), summed as the original sums it.

- length in characters (of the stripped text): +0.5 for 20-200, -0.5 under 10, -0.3 over 500
- +2.0 x ROUGE-L F1 (Porter-stemmed, rouge-score) against the reference answer
- +0.2 when the text ends with ".", "!" or "?"
- with more than 5 words, the type/token ratio of whitespace words: > 0.7 gives +0.3, < 0.5 gives -0.5

ROUGE-L is quadratic in length, so only the first 10,000 characters of a
response are compared: the seed's responses are at most 128 tokens, and past
500 characters the score is dominated by the length penalty anyway.
"""

from __future__ import annotations

import functools

from posttrain.rewards.registry import register

MAX_COMPARED = 10_000


@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(candidate: str, reference: str) -> float:
    if not candidate.strip() or not reference.strip():
        return 0.0
    return _scorer().score(reference, candidate[:MAX_COMPARED])["rougeL"].fmeasure


@register("medical_dialogue_quality")
def medical_dialogue_quality(solution_str, ground_truth, extra_info=None) -> float:
    """Length bands + 2 x ROUGE-L F1 with the reference + end punctuation + word variety (seed 001)."""
    text = solution_str.strip() if isinstance(solution_str, str) else ""
    reference = ground_truth.get("reference", "") if isinstance(ground_truth, dict) else ground_truth
    reference = reference if isinstance(reference, str) else ""
    score = 0.0
    if 20 <= len(text) <= 200:
        score += 0.5
    elif len(text) < 10:
        score -= 0.5
    elif len(text) > 500:
        score -= 0.3
    score += 2.0 * rouge_l(text, reference)
    if text.endswith((".", "!", "?")):
        score += 0.2
    words = text.split()
    if len(words) > 5:
        ratio = len(set(words)) / len(words)
        if ratio > 0.7:
            score += 0.3
        elif ratio < 0.5:
            score -= 0.5
    return score
