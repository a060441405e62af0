"""The judge recipes (issue 4) run for a few steps on the tiny model, on the shipped sample data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("recipe, reward", [("pairwise_judge", "pairwise_preference"),
                                            ("pointwise_judge", "pointwise_score")])
def test_generative_judge_recipes_run(recipe, reward, tiny_model, tmp_path, monkeypatch):
    from posttrain.pipeline import read_manifest, run

    monkeypatch.chdir(ROOT)
    run_dir = run(f"recipes/reward_models/{recipe}.yaml", [
        f"model={tiny_model}", f"output_dir={tmp_path / 'run'}", "stages.judge.trainer.max_steps=2",
        "stages.judge.trainer.max_completion_length=16"])
    stage = read_manifest(run_dir)["stages"]["judge"]
    assert stage["status"] == "done"
    assert (Path(run_dir) / "judge" / "model" / "config.json").exists()
    logged = [json.loads(line) for line in (Path(run_dir) / "judge" / "trainer_log.jsonl").read_text().splitlines()]
    # each step logs the judge reward by name, a finite value in 0..1
    values = [row[f"rewards/{reward}/mean"] for row in logged if f"rewards/{reward}/mean" in row]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values), logged


def test_agent_judge_recipe_runs(tiny_model, tmp_path, monkeypatch):
    from posttrain.pipeline import read_manifest, run

    monkeypatch.chdir(ROOT)
    run_dir = run("recipes/agent_judge/pipeline.yaml", [
        f"model={tiny_model}", f"output_dir={tmp_path / 'run'}", "stages.judge.trainer.max_steps=2",
        "stages.judge.trainer.gradient_accumulation_steps=1"])
    stage = read_manifest(run_dir)["stages"]["judge"]
    assert stage["status"] == "done"
    assert (Path(run_dir) / "judge" / "model" / "adapter_config.json").exists()
    adapter = json.loads((Path(run_dir) / "judge" / "model" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (64, 128, 0.1)
