"""Every recipe in recipes/ validates against the tiny model (run from the repo root, as users do)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.config import load_config
from posttrain.pipeline.validate import validate
from tests.conftest import readme_lines_missing, run_recipe_as_make_does, skip_unless_quoted_figures_apply

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml")) + sorted((ROOT / "recipes").rglob("*.yml"))


def test_there_are_recipes():
    assert "quickstart.yaml" in [p.name for p in RECIPES]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(recipe, tiny_model, monkeypatch):
    monkeypatch.chdir(ROOT)
    report = validate(str(recipe.relative_to(ROOT)), [f"model={tiny_model}"])
    assert report.problems == []
    assert report.ok
    config = load_config(recipe.relative_to(ROOT), [f"model={tiny_model}"])
    data_notes = [n for n in report.notes if ".data: " in n or ".eval_data: " in n]
    # every data source was read: a note with its valid record count, none empty
    assert data_notes, report.notes
    for note in data_notes:
        count = int(note.split(": ")[2].split(" valid records")[0])
        assert count > 0, note
    assert report.notes[0].startswith(f"config: {len(config.stages)} stage(s)")


def test_quickstart_shape(tiny_model, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = load_config("recipes/quickstart.yaml", [f"model={tiny_model}"])
    assert [s.name for s in config.stages] == ["sft1", "sft2", "grpo", "eval"]
    assert config.stage("sft2").model == "sft1"
    assert config.stage("grpo").model == "sft2"
    assert config.stage("eval").models == ["base", "sft1", "sft2", "grpo"]
    assert config.model == str(tiny_model)
    report = validate("recipes/quickstart.yaml", [f"model={tiny_model}"])
    assert report.ok, report.problems
    assert sum("over max_length 256" in n for n in report.notes) == 3  # sft1 data, sft2 data and eval data


def test_quickstart_runs(tiny_model, tmp_path, monkeypatch):
    from posttrain.pipeline import read_manifest, run

    monkeypatch.chdir(ROOT)
    run_dir = run("recipes/quickstart.yaml", [f"model={tiny_model}", f"output_dir={tmp_path / 'run'}",
                                              "stages.sft1.trainer.max_steps=3", "stages.sft2.trainer.max_steps=3",
                                              "stages.grpo.trainer.max_steps=5", "stages.eval.limit=4"])
    stages = read_manifest(run_dir)["stages"]
    assert [stages[s]["status"] for s in ("sft1", "sft2", "grpo", "eval")] == ["done"] * 4
    assert stages["sft2"]["input_model"].endswith("sft1/model")
    assert stages["grpo"]["input_model"].endswith("sft2/model")
    assert {"reward_first_fifth", "reward_last_fifth"} <= set(stages["grpo"]["metrics"])


@pytest.mark.parametrize("recipe", sorted((ROOT / "examples" / "llamafactory").glob("*.yaml")), ids=lambda p: p.name)
def test_llamafactory_examples_train_unchanged(recipe, tiny_model, tmp_path, monkeypatch):
    from posttrain.pipeline import read_manifest, run

    monkeypatch.chdir(ROOT)
    run_dir = run(str(recipe.relative_to(ROOT)), [f"model={tiny_model}", f"output_dir={tmp_path / 'run'}",
                                                   "stages.sft.trainer.max_steps=2"])
    assert read_manifest(run_dir)["stages"]["sft"]["status"] == "done"
    weights = "adapter_model.safetensors" if "lora" in recipe.name else "model.safetensors"
    assert (run_dir / "sft" / "model" / weights).exists()


def test_each_quickstart_stage_beats_its_input_and_the_readme_quotes_its_tables(tmp_path):
    """What `make demo` claims, run as it runs: the model it builds, the recipe unchanged, in a process of its own
    (pytest's workers run torch on one thread, and the thread count changes the figures). About 3 minutes."""
    from posttrain.pipeline import read_manifest
    from posttrain.stages.eval import comparison

    corpora = ["examples/data/glossary_alpaca.json", "examples/data/quickstart/sft.jsonl"]  # as the Makefile's
    run_dir = run_recipe_as_make_does(tmp_path, corpora, "recipes/quickstart.yaml")
    metrics = read_manifest(run_dir)["stages"]["grpo"]["metrics"]
    assert metrics["reward_steps_logged"] == 60
    assert metrics["reward_last_fifth"] > metrics["reward_first_fifth"] + 0.3, metrics
    # and on the held-out questions, the final stage's task metric (the same reward) is above the base model's
    combined = json.loads((run_dir / "eval" / "metrics.json").read_text())
    figures, task = combined["figures"], "reward:sample_size_estimation"
    assert figures["grpo"][task] > figures["base"][task] + 1.0, figures
    # the learning check: on held-out questions, greedy, each stage beats its input by more than the noise
    # (the paired 95 % interval excludes 0); a change that breaks learning fails here, not in a demo
    verdicts = {(c["model"], c["against"]): c["figures"][task] for c in combined["comparisons"]}
    for pair in (("sft2", "sft1"), ("sft2", "base"), ("grpo", "sft2")):
        assert verdicts[pair]["better"], (pair, verdicts[pair])
    # the README quotes this run: its tables and the GRPO stage's reward line must be what the recipe gives now, on
    # the kind of machine they came from
    skip_unless_quoted_figures_apply()
    quoted = [f"grpo: mean reward: first fifth of steps {metrics['reward_first_fifth']:.3f} → last fifth "
              f"{metrics['reward_last_fifth']:.3f}", *comparison(run_dir / "eval").splitlines()]
    missing = readme_lines_missing(quoted)
    assert not missing, f"README.md does not quote the quickstart as it runs now: {missing}"
