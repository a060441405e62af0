"""The TRL and VERL entry points score with the same functions; VERL loads the adapter file by path."""

from __future__ import annotations

import importlib.util

import pytest

import posttrain.rewards.adapters as adapters
from posttrain import rewards
from posttrain.errors import ConfigError

GOOD = "<think>2 x 100</think><answer>200</answer>"


def load_by_path():
    """What VERL does with custom_reward_function.path: a standalone module from a file."""
    spec = importlib.util.spec_from_file_location("custom_module", adapters.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verl_entry_loaded_by_path_dispatches_on_data_source():
    compute_score = load_by_path().compute_score
    truth = {"target": 200}
    assert compute_score(data_source="sample_size_estimation_train", solution_str=GOOD, ground_truth=truth,
                         extra_info={"split": "train", "index": 0}) == 1.1
    assert compute_score(data_source="sample_size_test", solution_str="junk", ground_truth=truth) == -2.0
    with pytest.raises(ValueError, match="data_source 'weather_train': no posttrain reward for 'weather'"):
        compute_score(data_source="weather_train", solution_str=GOOD, ground_truth=truth)


def test_verl_entry_sums_the_weighted_rewards_listed_in_extra_info():
    import numpy as np

    compute_score = load_by_path().compute_score
    listed = np.array([{"name": "sample_size_estimation", "weight": 2.0}, {"name": "answer_tags", "weight": -1.0},
                       {"name": "posttrain.rewards.formatting:answer_tags", "weight": 0.5}], dtype=object)
    result = compute_score(data_source="anything", solution_str=GOOD, ground_truth={"target": 200},
                           extra_info={"split": "train", "posttrain_rewards": listed})
    assert result == pytest.approx({"score": 2 * 1.1 - 1.0 + 0.5, "sample_size_estimation": 1.1, "answer_tags": 1.0,
                                    "posttrain.rewards.formatting:answer_tags": 1.0})
    assert compute_score(data_source="sample_size_train", solution_str=GOOD, ground_truth={"target": 200},
                         extra_info={"posttrain_rewards": []}) == 1.1  # an empty list: dispatch on data_source


def test_trl_reward_reads_dataset_columns_and_conversational_completions():
    reward = adapters.trl_reward("sample_size_estimation")
    assert reward.__name__ == "sample_size_estimation"
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "no"}]]
    scores = reward(prompts=["p", "p"], completions=completions, ground_truth=[{"target": 200}, {"target": 200}],
                    extra_info=[{}, {}], completion_ids=[[1], [2]])
    assert scores == [1.1, -2.0]


def test_custom_rewards_by_module_and_by_file(tmp_path):
    assert rewards.get("posttrain.rewards.formatting:answer_tags")("<answer>x</answer>", None) == 1.0
    path = tmp_path / "my_reward.py"
    path.write_text("def length(solution_str, ground_truth, extra_info=None):\n    return len(solution_str) / 10\n")
    assert rewards.get(f"{path}:length")("abcde", None) == 0.5
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        rewards.get(f"{path}:nope")
    with pytest.raises(ConfigError, match="did you mean 'exact_match'"):
        rewards.get("exact_mach")


@pytest.mark.parametrize("name", rewards.names())
def test_every_builtin_reward_passes_the_harness(name):
    from posttrain.rewards.harness import run_probes

    failures = [f"{c.name}: {c.detail}" for c in run_probes(name) if not c.ok]
    assert not failures, failures
