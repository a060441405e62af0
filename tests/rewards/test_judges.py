"""Judge rewards against cases written by hand from the seeds' formulas (tests/rewards/cases/), and judge_metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from posttrain.rewards.harness import read_cases, run_cases
from posttrain.rewards.judges import judge_metrics, parse_preference, pointwise_score

CASES = Path(__file__).parent / "cases"


@pytest.mark.parametrize("reward", ["pairwise_preference", "pointwise_score", "json_judge"])
def test_cases(reward):
    cases = read_cases(CASES / f"{reward}.jsonl")
    assert len(cases) >= 10
    failed = [c for c in run_cases(reward, cases) if not c.ok]
    assert not failed, failed


def test_pointwise_is_the_seed_curve():
    # exp(-2|e|/4) for errors 0..4: 1.0, 0.607, 0.368, 0.223, 0.135 as seed-systems.md lists them
    got = [round(pointwise_score(f"<score>{p}</score>", {"score": 4}), 3) for p in (4, 3, 2, 1, 0)]
    assert got == [1.0, 0.607, 0.368, 0.223, 0.135]


def test_tag_comes_before_the_last_lines():
    assert parse_preference("<preference>B</preference>\nResponse A") == "B"
    assert parse_preference("no verdict") == "unknown"


def _pair(pid, original, swapped, truth="A"):
    other = {"A": "B", "B": "A", "tie": "tie"}[truth]
    return [
        {"data_source": "pairwise_preference", "ground_truth": {"preferred": truth},
         "extra_info": {"pair_id": pid, "swapped": False}, "output": f"<preference>{original}</preference>"},
        {"data_source": "pairwise_preference", "ground_truth": {"preferred": other},
         "extra_info": {"pair_id": pid, "swapped": True}, "output": f"<preference>{swapped}</preference>"},
    ]


def test_pairwise_metrics():
    # p1 right both ways (consistent); p2 says A both ways (inconsistent, one right); p3 tie both (consistent, wrong);
    # p4 unparsable on one side
    records = _pair("p1", "A", "B") + _pair("p2", "A", "A") + _pair("p3", "tie", "tie") + _pair("p4", "A", "?")
    records[-1]["output"] = "no idea"
    metrics = judge_metrics(records)
    assert metrics["count"] == 8
    assert metrics["accuracy"] == pytest.approx(4 / 8)  # p1 x2, p2 original, p4 original
    assert metrics["unparsable"] == pytest.approx(1 / 8)
    assert metrics["pairs"] == 4
    assert metrics["position_consistency"] == pytest.approx(2 / 4)
    assert metrics["majority_baseline"] == pytest.approx(4 / 8)  # each pair is A one way, B the other


def test_pointwise_and_json_metrics():
    records = [{"data_source": "pointwise_score", "ground_truth": {"score": 4}, "output": "<score>4</score>"},
               {"data_source": "pointwise_score", "ground_truth": {"score": 4}, "output": "<score>2</score>"},
               {"data_source": "pointwise_score", "ground_truth": {"score": 4}, "output": "four"}]
    metrics = judge_metrics(records)
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["unparsable"] == pytest.approx(1 / 3)
    assert metrics["mean_reward"] == pytest.approx((1 + math.exp(-1)) / 3)
    assert "position_consistency" not in metrics

    ref = {"reasonableness_score": 0.5, "summary": "s"}
    truth = {"evaluation_type": "clip", "reference": ref}
    records = [{"data_source": "json_judge", "ground_truth": truth, "output": json.dumps(ref)},
               {"data_source": "json_judge", "ground_truth": truth,
                "output": json.dumps({"reasonableness_score": 0.75, "summary": "s"})},
               {"data_source": "json_judge", "ground_truth": truth, "output": "{not json"}]
    metrics = judge_metrics(records)
    assert metrics["unparsable"] == pytest.approx(1 / 3)
    assert metrics["mean_abs_error"] == pytest.approx(0.125)
    assert metrics["mean_reward"] == pytest.approx(1.75 / 3)


def _pairwise(truth, output="no idea"):
    return {"data_source": "pairwise_preference", "ground_truth": {"preferred": truth}, "output": output}


def _pointwise(truth, output="no idea"):
    return {"data_source": "pointwise_score", "ground_truth": {"score": truth}, "output": output}


def _clip(reference, output="no idea", kind="clip"):
    return {"data_source": "json_judge", "ground_truth": {"evaluation_type": kind, "reference": reference},
            "output": output}


CLIP_1 = {"reasonableness_score": 0.5, "summary": "s"}
CLIP_2 = {"reasonableness_score": 0.75, "summary": "t"}
CATEGORY = {"scores": {"tool_use_quality": 1, "information_relevance": 0.5, "content_extraction": 0,
                       "goal_achievement": 1}, "summary": "s", "reasoning": "r"}


def test_majority_baseline_by_hand():
    # A A A B tie and one unreadable truth, which no judge gets right: 3 of 6
    pairwise = [_pairwise(t) for t in ("A", "a", "A", "B", "tie", "maybe")]
    assert judge_metrics(pairwise)["majority_baseline"] == pytest.approx(3 / 6)
    # scores 3 3 1 and one outside 0..4: 2 of 4
    pointwise = [_pointwise(t) for t in (3, 3, 1, 7)]
    assert judge_metrics(pointwise)["majority_baseline"] == pytest.approx(2 / 4)
    # clip references 1 1 2 (the score counts, the summary text does not: CLIP_1 with another summary is CLIP_1),
    # one unreadable; a category reference is its own type's most common label: (2 + 1) of 5
    json_judged = [_clip(CLIP_1), _clip({**CLIP_1, "summary": "other"}), _clip(CLIP_2), _clip("not json"),
                   _clip(CATEGORY, kind="category")]
    assert judge_metrics(json_judged)["majority_baseline"] == pytest.approx(3 / 5)
    # mixed sources weigh by their records, as accuracy does: (3 + 2 + 3) of 15
    assert judge_metrics(pairwise + pointwise + json_judged)["majority_baseline"] == pytest.approx(8 / 15)
    assert judge_metrics([])["majority_baseline"] == 0.0


def test_a_judge_that_always_answers_the_most_common_label_scores_the_majority_baseline():
    """The baseline counts as accuracy counts: the constant judge's accuracy is the baseline exactly."""
    records = ([_pairwise(t, "<preference>A</preference>") for t in ("A", "A", "B", "tie", None)]
               + [_pointwise(t, "<score>3</score>") for t in (3, 3, 1, "x")]
               + [_clip(r, json.dumps(CLIP_1)) for r in (CLIP_1, {**CLIP_1, "summary": "u"}, CLIP_2, "not json")]
               + [_clip(CATEGORY, json.dumps(CATEGORY), kind="category")])
    metrics = judge_metrics(records)
    assert metrics["majority_baseline"] == pytest.approx((2 + 2 + 2 + 1) / 14)
    assert metrics["accuracy"] == metrics["majority_baseline"]


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="data_source 'x'"):
        judge_metrics([{"data_source": "x", "output": ""}])
