"""The generic rewards and answer extraction."""

from __future__ import annotations

import pytest

from posttrain.rewards.formatting import answer_tags, exact_match, extract_answer, numeric_match


@pytest.mark.parametrize("text, expected", [
    ("<answer> 42 </answer>", "42"),
    ("<answer>1</answer> then <answer>2</answer>", "2"),         # the last one
    ("<answer>line one\nline two</answer>", "line one\nline two"),
    ("no tags", None),
    ("<answer>prompt's</answer><|im_start|>assistant\n<answer>mine</answer>", "mine"),
    (None, None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("<answer>x</answer>", 1.0), ("<answer> </answer>", 0.0), ("<answer>a</answer><answer>b</answer>", 0.0),
    ("plain", 0.0), ("", 0.0),
])
def test_answer_tags(text, expected):
    assert answer_tags(text, None) == expected


@pytest.mark.parametrize("text, truth, expected", [
    ("<answer>Paris</answer>", "paris", 1.0),
    ("<answer>  New   York </answer>", "new york", 1.0),
    ("Paris", "Paris", 1.0),
    ("<answer>Lyon</answer>", "Paris", 0.0),
    ("<answer>Paris</answer>", {"answer": "Paris"}, 1.0),
    ("<answer>Paris</answer>", None, 0.0),
])
def test_exact_match(text, truth, expected):
    assert exact_match(text, truth) == expected


@pytest.mark.parametrize("text, truth, extra, expected", [
    ("<answer>100</answer>", 100, None, 1.0),
    ("<answer>100.9</answer>", 100, None, 1.0),      # within the default 1 %
    ("<answer>102</answer>", 100, None, 0.0),
    ("<answer>102</answer>", 100, {"rtol": 0.05}, 1.0),
    ("<answer>-3</answer>", -3, None, 1.0),
    ("<answer>1,000</answer>", {"target": 1000}, None, 1.0),
    ("<answer>none</answer>", 5, None, 0.0),
    ("<answer>5</answer>", "five", None, 0.0),
])
def test_numeric_match(text, truth, extra, expected):
    assert numeric_match(text, truth, extra) == expected


def test_tag_contents_finds_what_the_regex_finds_in_linear_time():
    import random
    import re
    import time

    from posttrain.rewards.formatting import tag_contents

    rng = random.Random(19)
    parts = ["<answer>", "</answer>", "<ANSWER>", "</Answer>", "x", "1", "\n", "<answer", "answer>", "</"]
    for _ in range(5000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 12)))
        assert tag_contents(text, "answer") == re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL), text
        assert tag_contents(text, "answer", True) == re.findall(r"<answer>(.*?)</answer>", text, re.S | re.I), text
    started = time.perf_counter()
    for reward in (answer_tags, exact_match, numeric_match):
        reward("<answer>" * 100_000, {"target": 1, "answer": "1"})
    assert time.perf_counter() - started < 1.0  # the regex took 12 s on 10,000 of them


def test_huge_targets_and_wrong_typed_extra_info_score_as_wrong_answers():
    from posttrain.rewards.clinical import sample_size_estimation

    answer = "<think>t</think><answer>200</answer>"
    assert numeric_match(answer, {"target": 10**400}) == 0.0
    assert numeric_match(answer, {"target": 200}, "rtol") == 1.0  # a string extra_info is no setting
    assert numeric_match(answer, {"target": 200}, {"rtol": "wide"}) == 0.0
    assert numeric_match(answer, {"target": 200, "rtol": 10**400}) == 0.0
    assert sample_size_estimation(answer, {"target": 10**400}) == -2.0
