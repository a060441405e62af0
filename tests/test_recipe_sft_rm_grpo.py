"""recipes/reward_models/sft_rm_grpo.yaml runs as one pipeline: SFT, then a reward model, then GRPO scored by it."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.pipeline import read_manifest, run

ROOT = Path(__file__).resolve().parent.parent


def test_sft_then_reward_model_then_grpo_with_it(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(ROOT)
    overrides = [f"model={tiny_model}", f"output_dir={tmp_path / 'run'}",
                 "stages.sft.trainer.max_steps=2", "stages.rm.trainer.max_steps=2",
                 "stages.grpo.trainer.max_steps=2", "stages.grpo.trainer.per_device_train_batch_size=4",
                 "stages.grpo.trainer.max_completion_length=8"]
    run_dir = run("recipes/reward_models/sft_rm_grpo.yaml", overrides)
    stages = read_manifest(run_dir)["stages"]
    assert [stages[name]["status"] for name in ("sft", "rm", "grpo")] == ["done"] * 3
    assert stages["grpo"]["input_model"] == str(run_dir / "sft" / "model")
    logged = [json.loads(line) for line in (run_dir / "grpo" / "trainer_log.jsonl").read_text().splitlines()]
    rewards = [line["rewards/rm_rm/mean"] for line in logged if "rewards/rm_rm/mean" in line]
    # the reward model's scores: real numbers, not a constant the reward function fell back to
    assert len(rewards) == 2 and all(isinstance(r, float) for r in rewards) and rewards[0] != rewards[1]

    # retraining the reward model retrains the GRPO stage that scores with it, and not the SFT stage
    again = run("recipes/reward_models/sft_rm_grpo.yaml", [*overrides, "stages.rm.trainer.learning_rate=5e-4"])
    after = read_manifest(again)["stages"]
    assert after["sft"]["run_id"] == stages["sft"]["run_id"]
    assert after["rm"]["run_id"] != stages["rm"]["run_id"] and after["grpo"]["run_id"] != stages["grpo"]["run_id"]


def test_a_process_reward_model_stage_then_grpo_scored_by_it(tmp_path, tiny_model):
    """The process reward model as a GRPO reward: its step scores, aggregated, are the logged reward."""
    from posttrain.data.io import read_rows

    prompts = tmp_path / "rl.jsonl"
    with open(prompts, "w") as f:
        for _, row in read_rows(ROOT / "examples/data/process_reward/test.jsonl"):
            f.write(json.dumps({"prompt": row["prompt"], "data_source": "arithmetic", "ground_truth": None}) + "\n")
    config = {
        "name": "prm-grpo", "model": str(tiny_model), "output_dir": str(tmp_path / "run"), "seed": 0,
        "stages": [
            {"name": "prm", "type": "process_reward",
             "data": {"path": str(ROOT / "examples/data/process_reward/train.jsonl"), "format": "steps"},
             "trainer": {"max_steps": 2, "per_device_train_batch_size": 4}},
            {"name": "grpo", "type": "grpo", "data": {"path": str(prompts), "format": "rl_prompt"},
             "rewards": [{"model": "prm", "aggregate": "mean"}],
             "trainer": {"max_steps": 2, "num_generations": 4, "per_device_train_batch_size": 4,
                         "max_completion_length": 12, "temperature": 1.5, "logging_steps": 1}}]}
    run_dir = run(config)
    stages = read_manifest(run_dir)["stages"]
    assert stages["prm"]["status"] == stages["grpo"]["status"] == "done"
    logged = [json.loads(line) for line in (run_dir / "grpo" / "trainer_log.jsonl").read_text().splitlines()]
    rewards = [line["rewards/rm_prm/mean"] for line in logged if "rewards/rm_prm/mean" in line]
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards) and rewards[0] != rewards[1]
