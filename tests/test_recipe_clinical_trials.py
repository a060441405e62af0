"""recipes/clinical_trials/pipeline.yaml: each stage chains on the one before, and the eval stage scores each task's
held-out records with that task's own reward; and, as a documented slower check, `make clinical` gives the figures
the README quotes, with each GRPO stage better than its input on its own task."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.pipeline import read_manifest, run
from tests.conftest import (full_recipe_run, readme_lines_missing, run_recipe_as_make_does,
                            skip_unless_quoted_figures_apply)

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "recipes/clinical_trials/pipeline.yaml"
DATA = "examples/data/clinical_trials"
CORPORA = [f"{DATA}/stage_1.json", f"{DATA}/sample_size_train.jsonl", f"{DATA}/study_search_train.jsonl"]  # make's
STAGES = ("sft1", "sft2", "grpo_sample_size", "grpo_study_search", "eval")
TASKS = {"grpo_sample_size": "reward:sample_size_estimation", "grpo_study_search": "reward:study_search"}


def test_the_clinical_pipeline_chains_its_stages_and_scores_each_task_with_its_reward(tmp_path, monkeypatch):
    from posttrain.models.tiny import init_model

    monkeypatch.chdir(ROOT)
    model = init_model(tmp_path / "base", CORPORA, size="tiny")  # its tokenizer knows the data's words
    overrides = [f"model={model}", f"output_dir={tmp_path / 'run'}",
                 "stages.sft1.trainer.max_steps=2", "stages.sft2.trainer.max_steps=2",
                 *(f"stages.{stage}.trainer.{key}" for stage in TASKS
                   for key in ("max_steps=1", "per_device_train_batch_size=4", "max_completion_length=8")),
                 "stages.eval.data.0.max_samples=3", "stages.eval.data.1.max_samples=2", "stages.eval.max_new_tokens=8"]
    run_dir = run(RECIPE, overrides)
    stages = read_manifest(run_dir)["stages"]
    assert [stages[name]["status"] for name in STAGES] == ["done"] * len(STAGES)
    for stage, previous in zip(STAGES[1:4], STAGES[:3]):
        assert stages[stage]["input_model"].endswith(f"{previous}/model")
    evaluation = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert set(evaluation["figures"]) == {"base", "sft1", "sft2", "grpo_sample_size", "grpo_study_search"}
    predictions = [json.loads(line) for line in (run_dir / "eval" / "sft2" / "predictions.jsonl").open()]
    # each record is scored by its own task's reward only
    assert sorted(p["data_source"] for p in predictions) == ["sample_size_estimation"] * 3 + ["study_search"] * 2
    for prediction in predictions:
        own = TASKS["grpo_study_search" if prediction["data_source"] == "study_search" else "grpo_sample_size"]
        assert [name for name in prediction["scores"] if name.startswith("reward:")] == [own]


@full_recipe_run("`make clinical` as it runs, about 15 min on 2 cores")
def test_make_clinical_shows_each_grpo_stage_better_on_its_task_and_the_readme_quotes_its_table(tmp_path):
    from posttrain.stages.eval import comparison

    run_dir = run_recipe_as_make_does(tmp_path, CORPORA, RECIPE)
    combined = json.loads((run_dir / "eval" / "metrics.json").read_text())
    verdicts = {(c["model"], c["against"]): c["figures"] for c in combined["comparisons"]}
    assert verdicts[("grpo_sample_size", "sft2")][TASKS["grpo_sample_size"]]["better"]
    assert verdicts[("grpo_study_search", "grpo_sample_size")][TASKS["grpo_study_search"]]["better"]
    skip_unless_quoted_figures_apply()
    missing = readme_lines_missing(comparison(run_dir / "eval").splitlines())
    assert not missing, f"README.md does not quote the clinical eval as `make clinical` gives it now: {missing}"
