"""posttrain/evaluation/metrics.py on given outputs: hand-computed BLEU and ROUGE, exact match, rewards as in
training, judge metrics."""

from __future__ import annotations

import math

import pytest

from posttrain.errors import ConfigError, DataError
from posttrain.evaluation import metrics
from posttrain.evaluation.examples import Example

CALLS: list[tuple] = []


def recording_reward(solution_str, ground_truth, extra_info=None):
    """A custom reward (module:function) that keeps its arguments, with a dict result as some rewards give."""
    CALLS.append((solution_str, ground_truth, extra_info))
    return {"score": float(len(solution_str)), "bonus": 0.5, "note": "text is not a figure"}


def _chat(reference: str, line: int = 1) -> Example:
    return Example("chats.jsonl", line, [{"role": "user", "content": "q"}], reference)


def _rl(ground_truth, source="s", extra=None, line=1) -> Example:
    reference = ground_truth if isinstance(ground_truth, str) else None
    return Example("rl.jsonl", line, [{"role": "user", "content": "q"}], reference, source, ground_truth, extra or {})


def test_bleu_is_sacrebleu_corpus_bleu_by_hand():
    examples = [_chat("a b c d e f"), _chat("a b c d")]
    per, summary = metrics.score(["bleu"], examples, ["a b c d e x", "a b c d"])
    # n-gram precisions over the corpus 9/10, 7/8, 5/6, 3/4; the lengths are equal, so no brevity penalty
    assert summary["bleu"] == pytest.approx(100 * (9 / 10 * 7 / 8 * 5 / 6 * 3 / 4) ** 0.25)
    # per example: sentence BLEU (5/6 * 4/5 * 3/4 * 2/3 = 1/3 for the first)
    assert [row["bleu"] for row in per] == pytest.approx([100 * (1 / 3) ** 0.25, 100.0])


def test_rouge_is_stemmed_f1_by_hand():
    per, summary = metrics.score(["rouge"], [_chat("the cats sat on the mat")], ["the cat sat"])
    # stemmed, "cats" matches "cat": ROUGE-1 P 3/3 R 3/6; ROUGE-2 P 2/2 R 2/5; LCS 3
    expected = {"rouge1": 2 / 3, "rouge2": 2 * 0.4 / 1.4, "rougeL": 2 / 3}
    assert per[0] == pytest.approx(expected)
    assert summary == pytest.approx(expected)


def test_exact_match_ignores_only_surrounding_whitespace():
    per, summary = metrics.score(["exact_match"], [_chat("42"), _chat("42"), _chat("Yes")], [" 42\n", "42.", "yes"])
    assert [row["exact_match"] for row in per] == [1.0, 0.0, 0.0]
    assert summary["exact_match"] == pytest.approx(1 / 3)


def test_a_reward_metric_is_the_reward_called_as_in_training():
    from posttrain.rewards import get

    truth, extra = {"target": 120}, {"question": "n?"}
    examples = [_rl(truth, "sample_size_estimation", extra, line=i) for i in (1, 2, 3)]
    outputs = ["<think>t</think><answer>118</answer>", "<think>t</think><answer>500</answer>", "118"]
    per, summary = metrics.score(["reward:sample_size_estimation"], examples, outputs)
    direct = [get("sample_size_estimation")(o, truth, extra) for o in outputs]
    assert [row["reward:sample_size_estimation"] for row in per] == direct == [1.1, 0.0, -2.0]
    assert summary["reward:sample_size_estimation"] == pytest.approx(-0.9 / 3)


def test_a_custom_reward_gets_ground_truth_and_extra_info_and_a_conversation_its_reference():
    CALLS.clear()
    name = "reward:tests.evaluation.test_metrics:recording_reward"
    examples = [_rl({"target": [1, 2]}, extra={"id": 7}), _chat("the reference")]
    per, summary = metrics.score([name], examples, ["abc", "de"])
    assert CALLS == [("abc", {"target": [1, 2]}, {"id": 7}), ("de", "the reference", {})]
    assert per == [{name: 3.0, f"{name}.bonus": 0.5}, {name: 2.0, f"{name}.bonus": 0.5}]
    assert summary == {name: 2.5, f"{name}.bonus": 0.5}


def test_with_two_tasks_in_the_data_each_reward_scores_its_own_task_and_a_format_check_scores_all():
    size = _rl({"target": 120}, "sample_size_estimation", line=1)
    search = _rl({"relevant_pmids": ["1"]}, "study_search_test", line=2)  # a split suffix still names the task
    names = ["reward:sample_size_estimation", "reward:study_search", "reward:think_answer_format"]
    answer = "<think>t</think><answer>118</answer>"
    per, summary = metrics.score(names, [size, search], [answer, "no query"])
    assert per == [{"reward:sample_size_estimation": 1.1, "reward:think_answer_format": 1.0},
                   {"reward:study_search": -2.0, "reward:think_answer_format": 0.0}]
    assert summary["reward:sample_size_estimation"] == 1.1  # the mean over its own task's record only
    # data of one task: any reward scores every record, as before
    per, _ = metrics.score(["reward:study_search"], [size], ["no query"])
    assert per == [{"reward:study_search": -2.0}]


def _pair(pair_id, swapped, preferred, line):
    return _rl({"preferred": preferred}, "pairwise_preference", {"pair_id": pair_id, "swapped": swapped}, line)


def test_judge_metrics_on_swapped_pairs_by_hand():
    from posttrain.rewards.judges import judge_metrics

    examples = [_pair("p1", False, "A", 1), _pair("p1", True, "B", 2), _pair("p2", False, "B", 3),
                _pair("p2", True, "A", 4)]
    outputs = ["<preference>A</preference>", "<preference>B</preference>", "<preference>A</preference>",
               "no idea"]
    per, summary = metrics.score(["judge"], examples, outputs)
    assert [row["judge"] for row in per] == ["A", "B", "A", "unknown"]
    # right on p1 both ways; p2 wrong, then unparsable; p1 names the same response in both orders, p2 does not
    # truths A, B, B, A: always answering either is right on 2 of 4
    assert summary["judge"] == {"count": 4, "accuracy": 0.5, "unparsable": 0.25, "pairs": 2,
                                "position_consistency": 0.5, "majority_baseline": 0.5}
    records = [{"data_source": e.data_source, "ground_truth": e.ground_truth, "extra_info": e.extra_info,
                "output": o} for e, o in zip(examples, outputs)]
    assert summary["judge"] == judge_metrics(records)


def test_judge_on_json_judge_prompts_reads_the_scores():
    truth = {"evaluation_type": "clip", "reference": '{"reasonableness_score": 0.8, "summary": "ok"}'}
    examples = [_rl(truth, "json_judge"), _rl(truth, "json_judge", line=2)]
    outputs = ['{"reasonableness_score": 0.6, "summary": "meh"}', "not json"]
    per, summary = metrics.score(["judge", "reward:json_judge"], examples, outputs)
    assert per[0] == {"judge": {"reasonableness_score": 0.6}, "reward:json_judge": pytest.approx(0.8)}
    assert per[1] == {"judge": None, "reward:json_judge": 0.0}
    assert summary["judge"]["unparsable"] == 0.5
    assert summary["judge"]["mean_abs_error"] == pytest.approx(0.2)


def test_judge_needs_judge_prompts():
    with pytest.raises(DataError, match=r"^rl.jsonl:3: data_source: metric judge reads judge prompts "
                                        r"\(pairwise_preference, pointwise_score, json_judge\); got 'sample_size'"):
        metrics.check_examples(["judge"], [_rl("a", "sample_size", line=3)])
    with pytest.raises(DataError, match="got a conversation"):
        metrics.check_examples(["judge"], [_chat("a")])


def test_reference_metrics_need_a_reference_text():
    with pytest.raises(DataError, match="ground_truth: metric exact_match compares the output with a reference"):
        metrics.check_examples(["exact_match"], [_rl({"target": 4})])
    metrics.check_examples(["reward:numeric_match"], [_rl({"target": 4})])  # a reward reads any ground truth


@pytest.mark.parametrize("spec, message", [
    ("bleu,rogue", "metric 'rogue': unknown; metrics: bleu, rouge, exact_match, judge, rm_accuracy, preference_accuracy, implicit_reward_accuracy, reward:NAME"),
    ("reward:nope", "metric 'reward:nope': reward 'nope': unknown; built-in rewards: answer_tags"),
    ("bleu,bleu", "metrics: bleu listed twice"),
    (" , ", "metrics: none given"),
])
def test_unknown_metrics_list_the_valid_ones(spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        metrics.parse(spec)


def test_parse_accepts_a_list_and_library_reward_names():
    assert metrics.parse(["rouge", "reward:json_judge", "judge"]) == ["rouge", "reward:json_judge", "judge"]
    assert "did you mean 'rouge'" in _error("rogue")


def _error(spec):
    with pytest.raises(ConfigError) as caught:
        metrics.parse(spec)
    return str(caught.value)


def test_bleu_without_sacrebleu_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # as if it were not installed
    assert _error("rouge,bleu") == "metric 'bleu' needs sacreBLEU: pip install 'posttrain[metrics]'"
    assert metrics.parse("rouge") == ["rouge"]


def test_empty_outputs_score_zero_not_nan():
    per, summary = metrics.score(["bleu", "rouge"], [_chat("a b")], [""])
    assert summary == {"bleu": 0.0, "rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert not any(math.isnan(v) for v in per[0].values())


def _rows(examples, outputs, per):
    return [{"output": o, "reference": e.reference, "scores": s, "data_source": e.data_source,
             "ground_truth": e.ground_truth, "extra_info": e.extra_info} for e, o, s in zip(examples, outputs, per)]


def test_each_figure_resamples_to_itself_on_all_the_examples():
    """What intervals and paired comparisons resample is the figure the table prints."""
    import numpy as np

    from posttrain.evaluation.compare import figures

    chats = [_chat("a b c d e f"), _chat("a b c d"), _chat("x y")]
    outputs = ["a b c d e x", "a b c d", "x"]
    names = ["bleu", "rouge", "exact_match", "reward:exact_match"]
    per, summary = metrics.score(names, chats, outputs)
    pairs = [_pair("p1", False, "A", 1), _pair("p1", True, "B", 2), _pair("p2", False, "B", 3)]
    verdicts = ["<preference>A</preference>", "<preference>B</preference>", "nothing"]
    judge_per, judge_summary = metrics.score(["judge"], pairs, verdicts)
    for names_, examples, outs, rows_per, flat in ((names, chats, outputs, per, figures(summary)),
                                                   (["judge"], pairs, verdicts, judge_per, figures(judge_summary))):
        found = metrics.resampling_figures(names_, _rows(examples, outs, rows_per))
        assert set(found) == set(flat)
        for name, value in flat.items():
            assert found[name].of(np.arange(len(examples))) == pytest.approx(value), name
    # the majority baseline is the data's, the same for every model: no interval, no paired comparison
    assert "majority_baseline" in judge_summary["judge"]
    assert "judge.majority_baseline" not in metrics.resampling_figures(["judge"], _rows(pairs, verdicts, judge_per))
