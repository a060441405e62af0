"""The judge recipes (issue 4) run for a few steps on the tiny model, on the shipped sample data, and their eval
stage compares base and the judge with the judge metrics and the judge's reward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.rewards import get

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("recipe, reward", [("pairwise_judge", "pairwise_preference"),
                                            ("pointwise_judge", "pointwise_score")])
def test_generative_judge_recipes_run(recipe, reward, tiny_model, tmp_path, monkeypatch):
    from posttrain.pipeline import read_manifest, run

    monkeypatch.chdir(ROOT)
    run_dir = run(f"recipes/reward_models/{recipe}.yaml", [
        f"model={tiny_model}", f"output_dir={tmp_path / 'run'}", "stages.judge.trainer.max_steps=2",
        "stages.judge.trainer.max_completion_length=16", *EVAL_OVERRIDES])
    stage = read_manifest(run_dir)["stages"]["judge"]
    assert stage["status"] == "done"
    assert (Path(run_dir) / "judge" / "model" / "config.json").exists()
    logged = [json.loads(line) for line in (Path(run_dir) / "judge" / "trainer_log.jsonl").read_text().splitlines()]
    # each step logs the judge reward by name, a finite value in 0..1
    values = [row[f"rewards/{reward}/mean"] for row in logged if f"rewards/{reward}/mean" in row]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values), logged
    judge = _check_eval(run_dir, reward)
    if recipe == "pairwise_judge":  # the first 4 prompts are two pairs, each in both orders
        assert judge["pairs"] == 2 and 0 <= judge["position_consistency"] <= 1


EVAL_OVERRIDES = ("stages.eval.max_new_tokens=8", "stages.eval.limit=4")


def _check_eval(run_dir, reward: str) -> dict:
    """base and the judge, each with its predictions and metrics; returns the judge's judge metrics."""
    combined = json.loads((Path(run_dir) / "eval" / "metrics.json").read_text())
    assert list(combined["models"]) == ["base", "judge"]
    for name, result in combined["models"].items():
        rows = (Path(run_dir) / "eval" / name / "predictions.jsonl").read_text().splitlines()
        assert len(rows) == 4 and result["count"] == 4
        assert 0 <= result["metrics"][f"reward:{reward}"] <= 1
        judge = result["metrics"]["judge"]
        assert judge["count"] == 4 and 0 <= judge["accuracy"] <= 1 and 0 <= judge["unparsable"] <= 1
        # per example, the metric is the reward function's value on the judge's output
        scored = [json.loads(row) for row in rows]
        assert [r["scores"][f"reward:{reward}"] for r in scored] == [
            get(reward)(r["output"], r["ground_truth"], r["extra_info"]) for r in scored]
    return combined["models"]["judge"]["metrics"]["judge"]


def test_agent_judge_recipe_runs(tiny_model, tmp_path, monkeypatch):
    from posttrain.pipeline import read_manifest, run

    monkeypatch.chdir(ROOT)
    run_dir = run("recipes/agent_judge/pipeline.yaml", [
        f"model={tiny_model}", f"output_dir={tmp_path / 'run'}", "stages.judge.trainer.max_steps=2",
        "stages.judge.trainer.gradient_accumulation_steps=1", *EVAL_OVERRIDES])
    stage = read_manifest(run_dir)["stages"]["judge"]
    assert stage["status"] == "done"
    assert (Path(run_dir) / "judge" / "model" / "adapter_config.json").exists()
    adapter = json.loads((Path(run_dir) / "judge" / "model" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (64, 128, 0.1)
    # evaluated on the held-out variant: JSON validity (unparsable) and, where valid, the score error
    _check_eval(run_dir, "json_judge")
    judge = json.loads((Path(run_dir) / "eval" / "judge" / "metrics.json").read_text())
    assert judge["adapter"] == str(Path(run_dir) / "judge" / "model")
    assert judge["data"] == ["examples/data/judges/reward_model_full_eval.json"]
    assert judge["formats"] == ["agent-eval-judge"]
