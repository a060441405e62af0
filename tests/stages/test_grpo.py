"""The GRPO stage: rl_prompt records, library rewards with weights, per-reward logging, a saved model."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import ConfigError, PosttrainError
from posttrain.pipeline import read_manifest, run
from tests.conftest import write_jsonl


def prompts(n=8):
    return [{"prompt": [{"role": "user", "content": f"A trial has 2 arms of {10 * (i + 1)}. Total?"}],
             "data_source": "sample_size_estimation", "ground_truth": {"target": 20 * (i + 1)},
             "extra_info": {"index": i}} for i in range(n)]


def config(tmp_path, tiny_model, **trainer):
    data = write_jsonl(tmp_path / "rl.jsonl", prompts())
    return {"name": "g", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "rl", "type": "grpo", "data": {"path": str(data), "format": "rl_prompt"},
                        "rewards": ["sample_size_estimation", {"name": "answer_tags", "weight": 0.5}],
                        "trainer": {"max_steps": 2, "per_device_train_batch_size": 4, "num_generations": 4,
                                    "max_completion_length": 8, "logging_steps": 1, "learning_rate": 1e-4,
                                    **trainer}}]}


def test_grpo_stage_trains_and_logs_each_reward(tmp_path, tiny_model):
    run_dir = run(config(tmp_path, tiny_model))
    assert read_manifest(run_dir)["stages"]["rl"]["status"] == "done"
    assert (run_dir / "rl" / "model" / "model.safetensors").exists()
    lines = [json.loads(line) for line in (run_dir / "rl" / "trainer_log.jsonl").read_text().splitlines()]
    logged = set().union(*lines)
    assert {"rewards/sample_size_estimation/mean", "rewards/sample_size_estimation/std",
            "rewards/answer_tags/mean"} <= logged, logged
    # a random model writes no tags: every completion scores -2 on format, 0 on answer_tags
    assert all(line["rewards/sample_size_estimation/mean"] == -2.0 for line in lines
               if "rewards/sample_size_estimation/mean" in line)


def test_a_batch_num_generations_does_not_divide_is_a_config_error(tmp_path, tiny_model):
    from posttrain.validate import validate

    report = validate(config(tmp_path, tiny_model, num_generations=3))
    assert any("stages.rl.trainer" in p and "divisible" in p for p in report.problems), report.problems


def test_unknown_reward_names_the_closest(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    cfg["stages"][0]["rewards"] = ["sample_size_estimaton"]
    with pytest.raises(ConfigError, match="did you mean 'sample_size_estimation'"):
        run(cfg)


def test_sft_records_are_refused_by_grpo(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    cfg["stages"][0]["data"] = {"path": str(write_jsonl(tmp_path / "c.jsonl", [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])), "format": "openai"}
    with pytest.raises(PosttrainError, match="openai makes conversation records"):
        run(cfg)
