"""recipes/medical_dialogue/pipeline.yaml runs end to end: SFT with LoRA, GRPO on it, base vs SFT vs GRPO, report,
export; and, as a documented slower check, `make medical` gives the tables the README quotes."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.pipeline import read_manifest, run
from tests.conftest import (full_recipe_run, readme_lines_missing, run_recipe_as_make_does,
                            skip_unless_quoted_figures_apply)

ROOT = Path(__file__).resolve().parent.parent


def test_the_medical_dialogue_pipeline_runs_and_evaluates_each_stage_on_its_own_weights(tmp_path, tiny_model,
                                                                                      monkeypatch):
    monkeypatch.chdir(ROOT)
    overrides = [f"model={tiny_model}", f"output_dir={tmp_path / 'run'}",
                 "stages.sft.trainer.max_steps=3", "stages.grpo.trainer.max_steps=2",
                 "stages.grpo.trainer.per_device_train_batch_size=4", "stages.grpo.trainer.max_completion_length=8",
                 "stages.eval.limit=4", "stages.eval.max_new_tokens=8"]
    run_dir = run("recipes/medical_dialogue/pipeline.yaml", overrides)
    stages = read_manifest(run_dir)["stages"]
    assert all(stage["status"] == "done" for stage in stages.values()), stages
    # GRPO trained LoRA on the merged SFT model: its adapter names the SFT adapter, which names the base
    grpo_config = json.loads((run_dir / "grpo" / "model" / "adapter_config.json").read_text())
    sft_config = json.loads((run_dir / "sft" / "model" / "adapter_config.json").read_text())
    assert grpo_config["base_model_name_or_path"] == str(run_dir / "sft" / "model")
    assert sft_config["base_model_name_or_path"] == str(tiny_model)
    assert "embed_tokens" in sft_config["modules_to_save"]  # the random embeddings trained whole

    logged = [json.loads(line) for line in (run_dir / "grpo" / "trainer_log.jsonl").read_text().splitlines()]
    assert sum("rewards/medical_dialogue_quality/mean" in line for line in logged) == 2

    evaluation = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert set(evaluation["figures"]) == {"base", "sft", "grpo"}
    for figures in evaluation["figures"].values():
        assert {"bleu", "rougeL", "reward:medical_dialogue_quality"} <= set(figures)
    # every prediction's reward is the training reward of its output against the reference
    from posttrain.rewards import get

    reward = get("medical_dialogue_quality")
    for model in ("base", "sft", "grpo"):
        for line in (run_dir / "eval" / model / "predictions.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert row["scores"]["reward:medical_dialogue_quality"] == reward(row["output"], row["reference"])

    # the export is one standalone model, the chain merged, loadable by plain transformers
    from transformers import AutoModelForCausalLM

    exported = run_dir / "export" / "model"
    assert not (exported / "adapter_config.json").exists() and (exported / "README.md").exists()
    assert type(AutoModelForCausalLM.from_pretrained(exported)).__name__ == "Qwen2ForCausalLM"
    assert (run_dir / "report.html").exists() and (run_dir / "eval" / "report.html").exists()


@full_recipe_run("`make medical` as it runs, about 5 min on 2 cores")
def test_make_medical_shows_each_stage_better_than_its_input_and_the_readme_quotes_its_tables(tmp_path):
    from posttrain.stages.eval import comparison

    data = "examples/data/medical_dialogue"
    run_dir = run_recipe_as_make_does(tmp_path, [f"{data}/flashcards.jsonl", f"{data}/chatdoctor.jsonl"],
                                      "recipes/medical_dialogue/pipeline.yaml")
    combined = json.loads((run_dir / "eval" / "metrics.json").read_text())
    verdicts = {(c["model"], c["against"]): c["figures"] for c in combined["comparisons"]}
    for metric in ("rougeL", "reward:medical_dialogue_quality"):
        assert verdicts[("sft", "base")][metric]["better"], verdicts
    # GRPO wins back what the teacher's sign-off costs: the reward it trained on, on the clean references
    assert verdicts[("grpo", "sft")]["reward:medical_dialogue_quality"]["better"], verdicts
    skip_unless_quoted_figures_apply()
    missing = readme_lines_missing(comparison(run_dir / "eval").splitlines())
    assert not missing, f"README.md does not quote the medical eval as `make medical` gives it now: {missing}"
