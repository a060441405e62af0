"""posttrain/evaluation/evaluate.py: one model on one file -> predictions.jsonl and metrics.json, or nothing."""

from __future__ import annotations

import json

import pytest

from posttrain.data.sources import Source
from posttrain.errors import ConfigError, DataError
from posttrain.evaluation import GenerationSettings, evaluate, score_outputs
from posttrain.evaluation.examples import load_examples
from posttrain.evaluation.generation import generate, load
from tests.conftest import make_chats, write_jsonl


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_evaluate_writes_predictions_and_metrics(talkative_model, tmp_path):
    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(6, seed=2))
    settings = GenerationSettings(max_new_tokens=6, batch_size=4)
    result = evaluate(str(talkative_model), [Source(str(chats))], "rouge,exact_match,reward:medical_dialogue_quality",
                      tmp_path / "out", settings=settings, progress=False)
    rows = _read(tmp_path / "out" / "predictions.jsonl")
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written == result.metrics and rows == result.rows
    # the outputs are the model's greedy answers, in the file's order
    examples, _ = load_examples([Source(str(chats))])
    expected = generate(*load(str(talkative_model)), [e.prompt for e in examples], settings)
    assert [row["output"] for row in rows] == expected
    assert [row["line"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["reference"] for row in rows] == [c["messages"][1]["content"] for c in make_chats(6, seed=2)]
    assert set(rows[0]["scores"]) == {"rouge1", "rouge2", "rougeL", "exact_match", "reward:medical_dialogue_quality"}
    assert written["count"] == 6 and written["formats"] == ["openai"] and written["adapter"] is None
    assert written["counts"] == {"rouge": 6, "exact_match": 6, "reward:medical_dialogue_quality": 6}
    assert written["generation"] == {"max_new_tokens": 6, "batch_size": 4, "temperature": None, "top_p": None,
                                     "do_sample": False, "seed": None, "num_samples": 1}
    for key in ("rouge1", "exact_match", "reward:medical_dialogue_quality"):
        assert written["metrics"][key] == pytest.approx(sum(r["scores"][key] for r in rows) / 6)


def test_score_outputs_with_given_outputs(tmp_path):
    rows = [{"prompt": "q", "data_source": "exact_match", "ground_truth": "yes", "extra_info": {"i": 1}},
            {"prompt": "q", "data_source": "exact_match", "ground_truth": "no"}]
    examples, _ = load_examples([Source(str(write_jsonl(tmp_path / "rl.jsonl", rows)))])
    result = score_outputs(examples, ["yes", "<answer>No</answer>"], ["exact_match", "reward:exact_match"],
                           tmp_path / "out", {"model": "m"})
    assert result.metrics["metrics"] == {"exact_match": 0.5, "reward:exact_match": 1.0}
    [first, _] = _read(tmp_path / "out" / "predictions.jsonl")
    assert first == {"path": str(tmp_path / "rl.jsonl"), "line": 1, "prompt": [{"role": "user", "content": "q"}],
                     "reference": "yes", "output": "yes", "scores": {"exact_match": 1.0, "reward:exact_match": 1.0},
                     "data_source": "exact_match", "ground_truth": "yes", "extra_info": {"i": 1}}
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["model"] == "m"


def test_k_samples_per_prompt_give_mean_at_k_and_unbiased_pass_at_k(tmp_path):
    rows = [{"prompt": "q", "data_source": "exact_match", "ground_truth": truth} for truth in ("yes", "no", "maybe")]
    examples, _ = load_examples([Source(str(write_jsonl(tmp_path / "rl.jsonl", rows)))])
    outputs = ["yes", "no", "yes", "yes",  # 3 of 4 right
               "no", "x", "x", "x",  # 1 of 4
               "x", "x", "x", "x"]  # none
    result = score_outputs(examples, outputs, ["reward:exact_match"], tmp_path / "out", seed=0, num_samples=4)
    figures = result.metrics["metrics"]
    assert figures["reward:exact_match"] == pytest.approx((0.75 + 0.25 + 0) / 3)  # mean@4
    assert figures["reward:exact_match.pass@1"] == pytest.approx((0.75 + 0.25 + 0) / 3)
    assert figures["reward:exact_match.pass@4"] == pytest.approx(2 / 3)
    assert result.metrics["num_samples"] == 4 and set(result.metrics["intervals"]) == set(figures)
    [first, *_] = _read(tmp_path / "out" / "predictions.jsonl")
    assert first["outputs"] == ["yes", "no", "yes", "yes"] and first["output"] == "yes"
    assert [s["reward:exact_match"] for s in first["sample_scores"]] == [1.0, 0.0, 1.0, 1.0]


def test_two_tasks_count_intervals_and_pass_at_k_over_each_rewards_own_records(tmp_path):
    rows = [{"prompt": "q", "data_source": "exact_match", "ground_truth": "yes"},
            {"prompt": "q", "data_source": "sample_size_estimation", "ground_truth": {"target": 100}},
            {"prompt": "q", "data_source": "sample_size_estimation", "ground_truth": {"target": 200}}]
    examples, _ = load_examples([Source(str(write_jsonl(tmp_path / "rl.jsonl", rows)))])
    good, bad = "<think>t</think><answer>100</answer>", "x"
    outputs = ["yes", bad, good, good, bad, bad]
    names = ["reward:exact_match", "reward:sample_size_estimation"]
    result = score_outputs(examples, outputs, names, seed=0, num_samples=2)
    assert result.metrics["counts"] == {"reward:exact_match": 1, "reward:sample_size_estimation": 2}
    figures = result.metrics["metrics"]
    assert figures["reward:exact_match"] == 0.5 and figures["reward:exact_match.pass@2"] == 1.0
    # the first answers 100 twice (1.1 each), the second has no format (-2 each)
    assert figures["reward:sample_size_estimation"] == pytest.approx((1.1 - 2) / 2)
    assert figures["reward:sample_size_estimation.pass@2"] == 0.5
    assert "reward:exact_match.pass@1" not in result.rows[1]["scores"]
    low, high = result.metrics["intervals"]["reward:sample_size_estimation"]
    assert low <= figures["reward:sample_size_estimation"] <= high


def test_k_samples_need_sampling_and_per_answer_metrics():
    from posttrain.config import load_config

    def eval_stage(**fields):
        return load_config({"name": "p", "model": "m", "stages": [
            {"name": "ev", "type": "eval", "data": "d.jsonl", "metrics": ["reward:exact_match"], **fields}]})

    with pytest.raises(ConfigError, match="num_samples 4: greedy decoding gives the same answer every time"):
        eval_stage(num_samples=4)
    with pytest.raises(ConfigError, match="num_samples 4: bleu is a figure over the whole file"):
        eval_stage(num_samples=4, temperature=1.0, metrics=["bleu", "reward:exact_match"])
    assert eval_stage(num_samples=4, temperature=1.0).stages[0].num_samples == 4
    with pytest.raises(ConfigError, match="num_samples 2: greedy decoding"):
        GenerationSettings(num_samples=2)


def test_k_samples_are_generated_for_each_prompt(tmp_path, talkative_model):
    rows = [{"prompt": f"question {i}", "data_source": "exact_match", "ground_truth": "yes"} for i in range(3)]
    data = write_jsonl(tmp_path / "rl.jsonl", rows)
    settings = GenerationSettings(max_new_tokens=4, batch_size=4, temperature=1.0, seed=0, num_samples=3)
    result = evaluate(str(talkative_model), [Source(str(data))], "reward:exact_match", tmp_path / "out",
                      settings=settings, progress=False)
    assert [len(row["outputs"]) for row in result.rows] == [3, 3, 3]
    assert len({output for row in result.rows for output in row["outputs"]}) > 3  # sampled, not one answer copied
    assert "reward:exact_match.pass@3" in result.metrics["metrics"]


@pytest.mark.parametrize("rows, metrics, error, message", [
    ([{"messages": [{"role": "user", "content": "q"}]}], "rouge", DataError,
     r"rl.jsonl:1: messages\[0\].role: expected the last turn to be assistant"),
    ([{"prompt": "q", "data_source": "s", "ground_truth": {"a": 1}}], "bleu", DataError,
     "rl.jsonl:1: ground_truth: metric bleu compares the output with a reference text"),
    ([{"prompt": "q", "data_source": "s", "ground_truth": "a"}], "judge", DataError,
     "rl.jsonl:1: data_source: metric judge reads judge prompts"),
    ([{"prompt": "q", "data_source": "s", "ground_truth": "a"}], "blue", ConfigError, "metric 'blue': unknown"),
])
def test_bad_input_fails_before_the_model_loads_and_writes_nothing(tmp_path, rows, metrics, error, message):
    data = write_jsonl(tmp_path / "rl.jsonl", rows)
    with pytest.raises(error, match=message):
        evaluate(str(tmp_path / "no-such-model"), [Source(str(data))], metrics, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
