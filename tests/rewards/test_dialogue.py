"""medical_dialogue_quality, case by case from seed 001's rules (ROUGE-L values from rouge-score itself)."""

from __future__ import annotations

import pytest

from posttrain.rewards.dialogue import medical_dialogue_quality, rouge_l

REF = "Drink plenty of fluids and rest for a few days."


@pytest.mark.parametrize("text, reference, expected", [
    # 20-200 chars (+0.5), identical to the reference (ROUGE-L 1.0: +2.0), ends with "." (+0.2), 10 words all distinct (+0.3)
    (REF, REF, 0.5 + 2.0 + 0.2 + 0.3),
    ("ok", REF, -0.5),                                           # under 10 chars, no overlap, no end mark
    ("Rest now!", REF, -0.5 + 0.2 + 2.0 * 2 * (1 / 2 * 1 / 10) / (1 / 2 + 1 / 10)),  # 9 chars; LCS "rest": P 1/2, R 1/10
    ("word " * 120, REF, -0.3 - 0.5),                           # 600 chars, ratio 1/120
    ("Fine thank you very much", "", 0.5),                       # 5 words: no ratio term; empty reference
    ("", REF, -0.5),
    (None, REF, -0.5),
])
def test_medical_dialogue_quality(text, reference, expected):
    assert medical_dialogue_quality(text, reference) == pytest.approx(expected)


def test_stemming_and_reference_in_a_dict():
    # "treated"/"treating" stem alike: ROUGE-L counts them as matches
    assert rouge_l("patients treated", "patient treating") == pytest.approx(1.0)
    assert medical_dialogue_quality(REF, {"reference": REF}) == pytest.approx(3.0)


def test_long_responses_are_bounded():
    import time

    started = time.perf_counter()
    medical_dialogue_quality("a b c d e f g " * 150_000, REF)
    assert time.perf_counter() - started < 1.0
