"""`posttrain score` on single responses (conversations, prompt + completion rows) and its errors."""

import json

import pytest
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.errors import PosttrainError
from posttrain.scoring.process import ProcessScorer
from posttrain.scoring.score_file import score_file
from posttrain.stages.process_reward import step_metrics
from tests.conftest import write_jsonl


def test_single_responses_get_one_score_each_whatever_the_batch(tmp_path, reward_model):
    convs = write_jsonl(tmp_path / "c.jsonl", [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a" * (i + 1)}]}
        for i in range(5)])
    one = score_file(str(reward_model), convs, batch_size=1)
    many = score_file(str(reward_model), convs, batch_size=4)
    assert one.kind == "single" and [r["line"] for r in one.rows] == [1, 2, 3, 4, 5]
    assert [r["score"] for r in one.rows] == pytest.approx([r["score"] for r in many.rows], abs=1e-5)


def test_prompt_completion_rows_score_as_the_same_conversation(tmp_path, reward_model):
    rows = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": [{"role": "user", "content": "q"}], "completion": "a",
                                                "data_source": "x", "ground_truth": None}])
    convs = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]}])
    assert score_file(str(reward_model), rows).rows[0]["score"] == score_file(str(reward_model), convs).rows[0]["score"]


def test_cli_writes_the_scores_and_a_bad_row_exits_2(tmp_path, reward_model):
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"chosen": "a", "rejected": "b"}, {"chosen": "c", "rejected": "d",
                                                                                   "tie": True}])
    out = tmp_path / "out" / "s.jsonl"
    result = CliRunner().invoke(app, ["score", "--model", str(reward_model), "--data", str(pairs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "pairs: 1" in result.output and "ties (not counted): 1" in result.output
    assert [set(json.loads(line)) >= {"chosen_score", "rejected_score"} for line in out.read_text().splitlines()] == [True] * 2
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"chosen": "a", "rejected": "b"}, {"chosen": "a"}])
    result = CliRunner().invoke(app, ["score", "--model", str(reward_model), "--data", str(bad), "--out",
                                      str(tmp_path / "bad_out.jsonl")])
    assert result.exit_code == 2 and "bad.jsonl:2" in result.output and "rejected" in result.output
    assert not (tmp_path / "bad_out.jsonl").exists()


def test_rl_prompts_without_completions_are_refused(tmp_path, reward_model):
    rows = write_jsonl(tmp_path / "rl.jsonl", [{"prompt": [{"role": "user", "content": "q"}], "data_source": "x",
                                                "ground_truth": None}])
    with pytest.raises(PosttrainError, match="scores preference pairs, step-labelled solutions, conversations, or rows with a prompt"):
        score_file(str(reward_model), rows)


def test_a_process_reward_model_scores_each_step_of_labelled_solutions(tmp_path, tiny_model):
    from tests.scoring.test_process import make_prm

    prm = make_prm(tmp_path, tiny_model)
    steps = write_jsonl(tmp_path / "steps.jsonl", [
        {"prompt": "Compute 2 + 3 - 1.", "completions": ["2 + 3 = 5", "5 - 1 = 4", "Answer: 4"],
         "labels": [True, True, True]},
        {"prompt": "Compute 4 + 4.", "completions": ["4 + 4 = 9", "Answer: 9"], "labels": [False, False]}])
    result = score_file(str(prm), steps, batch_size=1)
    scorer = ProcessScorer(str(prm), device="cpu")
    assert result.kind == "steps"
    for row in result.rows:
        expected = scorer.step_probabilities(row["prompt"], row["completions"])
        assert row["step_scores"] == pytest.approx(expected, abs=1e-5)
        assert row["score"] == pytest.approx(min(expected), abs=1e-5)
    probs = [row["step_scores"] for row in result.rows]
    assert result.metrics == pytest.approx(step_metrics(probs, [[True] * 3, [False] * 2]))

    result = CliRunner().invoke(app, ["score", "--model", str(prm), "--data", str(steps), "--out",
                                      str(tmp_path / "s.jsonl")])
    assert result.exit_code == 0, result.output
    assert "solutions: 2  steps: 5  step accuracy:" in result.output and "first error f1:" in result.output
    written = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [len(row["step_scores"]) for row in written] == [3, 2]


def test_a_process_reward_model_cuts_whole_responses_into_steps(tmp_path, tiny_model):
    from tests.scoring.test_process import make_prm

    prm = make_prm(tmp_path, tiny_model)
    rows = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "Compute 2 + 3.", "completion": "2 + 3 = 5 | Answer: 5"}])
    scorer = ProcessScorer(str(prm), device="cpu")
    expected = scorer.step_probabilities("Compute 2 + 3.", ["2 + 3 = 5", "Answer: 5"])
    row = score_file(str(prm), rows, step_separator="|", aggregate="mean").rows[0]
    assert row["step_scores"] == pytest.approx(expected, abs=1e-5)
    assert row["score"] == pytest.approx(sum(expected) / 2, abs=1e-5)
    with pytest.raises(PosttrainError, match="aggregate: expected one of min, mean, product"):
        score_file(str(prm), rows, aggregate="max")


def test_step_labelled_solutions_need_a_process_reward_model(tmp_path, reward_model):
    steps = write_jsonl(tmp_path / "steps.jsonl", [{"prompt": "q", "completions": ["a"], "labels": [True]}])
    with pytest.raises(PosttrainError, match="need a process reward model"):
        score_file(str(reward_model), steps)


def test_a_conversation_with_tools_is_refused(tmp_path, reward_model):
    from posttrain.errors import DataError

    rows = write_jsonl(tmp_path / "tools.jsonl", [{
        "tools": [{"name": "f", "parameters": {"type": "object"}}],
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    with pytest.raises(DataError, match="tools: a tool list; `posttrain score` scores conversations without tools"):
        score_file(str(reward_model), rows)
