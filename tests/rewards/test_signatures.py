"""Rewards are called by their own parameter names: VERL's real gsm8k file and the shapes VERL's and TRL's docs
describe score as written, and a signature no call can fill is refused naming its parameters."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from posttrain.errors import ConfigError
from posttrain.rewards import adapters, get

SHAPES = Path(__file__).parent / "verl" / "shapes.py"
GSM8K = Path(__file__).parent / "verl" / "gsm8k.py"
ROW = {"split": "train", "index": 0, "answer": "2 + 70 = 72\n#### 72", "question": "How many?"}
RIGHT, WRONG = "So it is 72.\n#### 72", "So it is 71.\n#### 71"


def shape(name: str) -> str:
    return f"{SHAPES}:{name}"


def test_verl_gsm8k_file_is_called_per_task_and_its_defaults_stay():
    # by position, extra_info (a dict) landed in `method` and extract_solution's assert failed
    reward = get(f"{GSM8K}:compute_score")
    assert reward.form == "VERL per-task"
    assert reward.defaults == ["method", "format_score", "score"]
    assert reward(RIGHT, "72", ROW, data_source="openai/gsm8k") == 1.0
    assert reward(WRONG, "72", ROW) == 0.0
    assert reward("no answer", "72", ROW) == 0


@pytest.mark.parametrize(("name", "form"), [
    ("compute_score", "VERL keyword"), ("math_shape", "VERL per-task"), ("prime_shape", "VERL per-task"),
    ("kwargs_shape", "VERL keyword"), ("batch_shape", "VERL batch"), ("trl_shape", "TRL")])
def test_each_documented_shape_scores_right_above_wrong(name, form):
    reward = get(shape(name))
    assert reward.form == form, reward.describe()
    right = RIGHT.replace("#### 72", r"\boxed{72}") if name == "math_shape" else RIGHT
    scores = [adapters.score_value(reward(text, "72", ROW, data_source="openai/gsm8k")) for text in (right, WRONG)]
    assert scores == [1.0, 0.0]


def test_a_verl_reward_taking_kwargs_gets_what_verl_passes():
    result = get(shape("kwargs_shape"))(RIGHT, "72", ROW, data_source="openai/gsm8k")
    assert result == {"score": 1.0, "had_source": 1.0}


def test_prime_math_names_the_completion_otherwise():
    reward = get(shape("prime_shape"))
    assert reward.keywords == {"model_output": "solution_str", "ground_truth": "ground_truth"}


def test_trl_reward_reads_a_column_from_extra_info_and_says_which_row_lacks_it():
    reward = get(shape("trl_column"))
    assert reward.form == "TRL" and reward.columns == ["answer"]
    assert "answer<-extra_info['answer']" in reward.describe()
    assert reward.batch([RIGHT, WRONG], ["72", "72"], [ROW, ROW]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="row 1 of this batch has no 'answer'"):
        reward.batch([RIGHT, WRONG], ["72", "72"], [ROW, {}])


def test_through_trl_each_form_gets_trl_batches():
    # what GRPOTrainer passes: conversational completions, posttrain's JSON columns, TRL's own keywords
    completions = [[{"role": "assistant", "content": text}] for text in (RIGHT, WRONG)]
    columns = {"ground_truth_json": ['"72"', '"72"'], "extra_info_json": ['{"answer": "#### 72"}'] * 2,
               "data_source": ["openai/gsm8k"] * 2, "prompts": [[{"role": "user", "content": "q"}]] * 2,
               "completion_ids": [[1], [2]], "trainer_state": object()}
    for name in ("compute_score", "batch_shape", "trl_shape", "trl_column"):
        assert adapters.trl_reward(shape(name))(completions, **columns) == [1.0, 0.0], name
    assert adapters.trl_reward(f"{GSM8K}:compute_score")(completions, **columns) == [1.0, 0.0]


@pytest.mark.parametrize(("name", "named"), [("needs_mode", "mode"), ("keyword_only", "strictness")])
def test_a_signature_no_call_can_fill_is_refused_naming_it(name, named):
    with pytest.raises(ConfigError, match=rf"cannot call {name}\(.*\): parameter\(s\) {named} get no value"):
        get(shape(name))


def test_a_reward_file_that_fails_to_import_is_a_config_error(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def compute_score(:\n")
    with pytest.raises(ConfigError, match="cannot import .*broken.py: SyntaxError"):
        get(f"{broken}:compute_score")


def test_verl_entry_point_maps_a_users_data_source_and_says_how_when_it_cannot(monkeypatch):
    monkeypatch.setattr(adapters, "_verl_default", lambda: None)
    mapping = {"openai/gsm8k": f"{GSM8K}:compute_score"}
    assert adapters.compute_score("openai/gsm8k", RIGHT, "72", ROW, rewards=mapping) == 1.0
    assert adapters.compute_score("openai/gsm8k", WRONG, "72", ROW, rewards=json.dumps(mapping)) == 0.0
    with pytest.raises(ValueError, match=r"no posttrain reward for 'openai/gsm8k'.*reward_kwargs.rewards"):
        adapters.compute_score("openai/gsm8k", RIGHT, "72", ROW)


def test_verl_entry_point_falls_back_to_verls_default_compute_score(monkeypatch):
    calls = []
    fake = types.ModuleType("verl.utils.reward_score")
    fake.default_compute_score = lambda source, text, truth, info=None, **kw: calls.append(source) or 0.5
    for name in ("verl", "verl.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "verl.utils.reward_score", fake)
    assert adapters.compute_score("openai/gsm8k", RIGHT, "72", ROW) == 0.5
    assert adapters.compute_score("sample_size_estimation", "x", {"target": 5}) == -2.0  # posttrain's own first
    assert calls == ["openai/gsm8k"]


def test_batch_entry_point_scores_each_row_with_its_reward(monkeypatch):
    monkeypatch.setattr(adapters, "_verl_default", lambda: None)
    good = "<think>t</think><answer>200</answer>"
    scores = adapters.compute_score_batch(
        data_sources=["sample_size_estimation_train", "openai/gsm8k", "openai/gsm8k"],
        solution_strs=[good, RIGHT, WRONG], ground_truths=[{"target": 200}, "72", "72"],
        extra_infos=[{}, ROW, ROW], rewards={"openai/gsm8k": shape("batch_shape")})
    assert scores == [1.1, 1.0, 0.0]


def test_rewards_test_says_the_form_and_refuses_what_cannot_be_called():
    from typer.testing import CliRunner

    from posttrain.cli import app

    result = CliRunner().invoke(app, ["rewards", "test", f"{GSM8K}:compute_score"])
    assert result.exit_code == 0, result.output
    assert "called in the VERL per-task form" in result.output and "method, format_score, score" in result.output
    result = CliRunner().invoke(app, ["rewards", "test", shape("needs_mode")])
    assert result.exit_code == 2
    assert "parameter(s) mode get no value" in result.output
