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


def test_the_cpu_pairwise_judge_recipe_runs_sft_then_grpo_then_evaluates_on_held_out_pairs(tiny_model, tmp_path,
                                                                                          monkeypatch):
    """recipes/reward_models/pairwise_judge_cpu.yaml, a few steps of each stage on the tiny model: the judge starts
    from the SFT stage, and the eval stage reads the held-out file, not the training one, for all three models."""
    from posttrain.config import load_config
    from posttrain.pipeline import read_manifest, run

    monkeypatch.chdir(ROOT)
    recipe = "recipes/reward_models/pairwise_judge_cpu.yaml"
    config = load_config(recipe, [f"model={tiny_model}"])
    assert [(s.name, s.type) for s in config.stages] == [("sft", "sft"), ("judge", "grpo"), ("eval", "eval")]
    assert config.stage("eval").models == ["base", "sft", "judge"]
    assert [d.path for d in config.stage("eval").data] == ["examples/data/judges/pairwise_heldout.jsonl"]
    run_dir = run(recipe, [f"model={tiny_model}", f"output_dir={tmp_path / 'run'}", "stages.sft.trainer.max_steps=2",
                           "stages.judge.trainer.max_steps=2", "stages.judge.trainer.max_completion_length=16",
                           "stages.eval.max_new_tokens=8", "stages.eval.limit=4"])
    stages = read_manifest(run_dir)["stages"]
    assert [stages[s]["status"] for s in ("sft", "judge", "eval")] == ["done"] * 3
    assert stages["judge"]["input_model"].endswith("sft/model")
    combined = json.loads((Path(run_dir) / "eval" / "metrics.json").read_text())
    assert list(combined["models"]) == ["base", "sft", "judge"]
    held_out = {json.loads(line)["unique_id"] for line in
                (ROOT / "examples" / "data" / "judges" / "pairwise_heldout.jsonl").read_text().splitlines()}
    for name in combined["models"]:
        rows = [json.loads(line) for line in (Path(run_dir) / "eval" / name / "predictions.jsonl").read_text()
                .splitlines()]
        assert {r["extra_info"]["pair_id"] for r in rows} <= held_out and len(rows) == 4
        # two held-out pairs in both orders: always naming one position scores 0.5, the baseline the table prints
        assert combined["models"][name]["metrics"]["judge"]["majority_baseline"] == 0.5


@pytest.mark.slow
def test_the_cpu_pairwise_judge_beats_the_majority_baseline_on_held_out_pairs_as_docs_judges_quotes(tmp_path):
    """What `make judge` claims, run as docs/judges.md says it ran: the model it builds, the recipe unchanged, one
    torch thread, in a process of its own (pytest's workers set their own thread count). About 4 minutes."""
    import os
    import subprocess
    import sys

    from posttrain.stages.eval import comparison

    posttrain = [sys.executable, "-c", "from posttrain.cli import main; main()"]
    model, run_dir = tmp_path / "judge-base", tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for command in (["init-model", model, "--size", "small", "--corpus", "examples/data/judges/pairwise_sft.jsonl",
                     "--corpus", "examples/data/judges/pairwise_train.jsonl"],
                    ["run", "recipes/reward_models/pairwise_judge_cpu.yaml", f"model={model}", f"output_dir={run_dir}"]):
        done = subprocess.run([*posttrain, *map(str, command)], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    combined = json.loads((run_dir / "eval" / "metrics.json").read_text())
    judge = combined["models"]["judge"]["metrics"]["judge"]
    low, _ = combined["intervals"]["judge"]["judge.accuracy"]
    assert judge["majority_baseline"] == 0.5 and low > judge["majority_baseline"], (judge, low)
    # the judge beats the SFT stage it started from and the base model on the same held-out pairs
    verdicts = {(c["model"], c["against"]): c["figures"]["judge.accuracy"] for c in combined["comparisons"]}
    assert verdicts[("judge", "sft")]["better"] and verdicts[("judge", "base")]["better"], verdicts
    # docs/judges.md quotes this run's tables
    docs = (ROOT / "docs" / "judges.md").read_text(encoding="utf-8")
    for line in comparison(run_dir / "eval").splitlines():
        assert line in docs, f"docs/judges.md does not quote the CPU pairwise judge as it runs now: {line}"
