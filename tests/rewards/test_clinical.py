"""sample_size_estimation against cases worked out by hand from the seed's rules (seed-systems.md §1)."""

from __future__ import annotations

import pytest

from posttrain.rewards.clinical import sample_size_estimation

T = {"target": 200, "answer_type": "total", "trial_id": "NCT0", "pmid": "1"}


def wrap(answer: str, think: str = "2 arms of 100") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


@pytest.mark.parametrize("completion, ground_truth, expected", [
    (wrap("200"), T, 1.1),
    (wrap("160"), T, 1.1),             # exactly 0.8 x target
    (wrap("240"), T, 1.1),             # exactly 1.2 x target
    (wrap("159"), T, 0.0),
    (wrap("241"), T, 0.0),
    (wrap("1,9 9"), T, 1.1),           # commas and spaces removed: 199
    (wrap("about 210 patients"), T, 1.1),
    (wrap("210.5"), T, 1.1),
    (wrap("-200"), T, 1.1),            # the seed's pattern has no minus sign: reads 200
    (wrap("no number"), T, 0.0),
    (wrap(""), T, 0.0),
    ("<answer>200</answer>", T, -2.0),                         # no think block
    ("<think>a</think><think>b</think><answer>200</answer>", T, -2.0),
    ("<answer>200</answer><think>late</think>", T, -2.0),      # wrong order
    (wrap("200") + "<answer>200</answer>", T, -2.0),           # two answers
    ("", T, -2.0),
    (wrap("200"), {"target": "two hundred"}, -2.0),            # non-numeric target
    (wrap("200"), {}, -2.0),                                   # missing target
    (wrap("200"), {"target": float("nan")}, -2.0),
    (wrap("200"), '{"target": 200}', 1.1),                     # a struct serialised as JSON
    ("User: hi <|im_start|>assistant\n" + wrap("200"), T, 1.1),   # an echoed prompt is dropped
    (wrap("50"), {"target": -50}, 0.0),                        # window 0.8t..1.2t is empty for t < 0
    (wrap("0"), {"target": 0}, 1.1),
])
def test_sample_size_estimation(completion, ground_truth, expected):
    assert sample_size_estimation(completion, ground_truth) == expected


@pytest.mark.parametrize("text, expected", [
    ("<think>3 times 65 = 195</think><answer>195</answer>", 1.0),
    ("3 times 65 = 195. <answer>195</answer>", 0.0),  # the tags of the reasoning left out
    ("<answer>195</answer><think>x</think>", 0.0),  # out of order
    ("<think>a</think><think>b</think><answer>1</answer>", 0.0),
    ("", 0.0), (None, 0.0),
])
def test_think_answer_format_is_the_format_rule_of_sample_size_estimation(text, expected):
    from posttrain.rewards.clinical import think_answer_format_reward

    assert think_answer_format_reward(text) == expected
    if text:  # the same rule: -2 exactly where the format fails
        assert (sample_size_estimation(text, {"target": 195}) != -2.0) == bool(expected)
