"""LLaMA-Factory's own recipes of stage dpo, kto, rm and pt, with its dataset_info.json and demo files
(tests/integrations/llamafactory/), translate to posttrain's stage types and train, and their outputs load with
peft; the preference keys reach the TRL config fields they mean, and the ones without an equivalent are named."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from posttrain.config import load_config
from posttrain.integrations.llamafactory import to_pipeline
from posttrain.pipeline import read_manifest, run

FIXTURES = Path(__file__).parent / "llamafactory"
RECIPES = {"dpo": "qwen3_lora_dpo.yaml", "kto": "qwen3_lora_kto.yaml", "rm": "qwen3_lora_reward.yaml",
           "pt": "qwen3_lora_pretrain.yaml"}


def recipe(stage: str) -> dict:
    return yaml.safe_load((FIXTURES / "examples" / "train_lora" / RECIPES[stage]).read_text())


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "posttrain" and r.levelno == logging.WARNING)


@pytest.mark.parametrize("stage, kind, trainer", [
    ("dpo", "dpo", {"beta": 0.1, "learning_rate": 5e-6, "max_length": 2048, "gradient_accumulation_steps": 8}),
    ("kto", "kto", {"beta": 0.1, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}),
    ("rm", "reward_model", {"learning_rate": 1e-4, "max_length": 2048}),
    ("pt", "pt", {"learning_rate": 1e-4, "num_train_epochs": 3.0}),
])
def test_each_recipe_becomes_its_posttrain_stage_type(stage, kind, trainer, caplog):
    (translated,) = to_pipeline(recipe(stage))["stages"]
    assert translated["name"] == stage and translated["type"] == kind and translated["finetuning"] == "lora"
    assert translated["lora"] == {"r": 8, "dropout": 0.0, "target_modules": "all-linear"}
    assert {k: translated["trainer"][k] for k in trainer} == trainer
    assert translated["data"]["dataset"] == {"dpo": "dpo_en_demo", "rm": "dpo_en_demo", "kto": "kto_en_demo",
                                             "pt": "c4_demo"}[stage]
    if stage == "pt":  # cutoff_len is the block size of the packed text; a pt stage has no chat template
        assert translated["block_size"] == 2048 and "max_length" not in translated["trainer"]
        assert "dataset_num_proc" not in translated["trainer"] and "preprocessing_num_workers" in warnings_of(caplog)
    if stage == "kto":  # LLaMA-Factory's batch of 1 x 8 accumulated is one batch of 8 for TRL's in-batch KL
        assert "batches of 8" in warnings_of(caplog)


@pytest.mark.parametrize("keys, kind, trainer", [
    ({"pref_loss": "ipo", "pref_beta": 0.3}, "dpo", {"loss_type": "ipo", "beta": 0.3}),
    ({"pref_loss": "hinge"}, "dpo", {"loss_type": "hinge"}),
    ({"pref_ftx": 0.5}, "dpo", {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}),
    ({"ld_alpha": 0.5}, "dpo", {"ld_alpha": 0.5}),
])
def test_preference_keys_reach_the_dpo_config(keys, kind, trainer):
    raw = {**recipe("dpo"), **keys}
    (translated,) = to_pipeline(raw)["stages"]
    assert translated["type"] == kind and {k: translated["trainer"][k] for k in trainer} == trainer
    args = load_config(raw).stages[0]  # and DPOConfig takes them
    assert {k: args.trainer[k] for k in trainer} == trainer


def test_kto_weights_and_the_keys_without_an_equivalent(caplog):
    (translated,) = to_pipeline({**recipe("kto"), "kto_chosen_weight": 1.5, "kto_rejected_weight": 0.8,
                                 "pref_ftx": 0.2})["stages"]
    assert translated["trainer"]["desirable_weight"] == 1.5 and translated["trainer"]["undesirable_weight"] == 0.8
    assert "pref_ftx: TRL's kto trainer has no equivalent; ignored" in warnings_of(caplog)
    (translated,) = to_pipeline({**recipe("dpo"), "dpo_label_smoothing": 0.1})["stages"]
    assert "label_smoothing" not in translated["trainer"] and "dpo_label_smoothing" in warnings_of(caplog)
    (translated,) = to_pipeline({**recipe("rm"), "pref_beta": 0.2})["stages"]
    assert "beta" not in translated.get("trainer", {}) and "pref_beta: a preference key" in warnings_of(caplog)


@pytest.fixture()
def lf_dir(tmp_path, monkeypatch):
    """LLaMA-Factory's layout: recipes under examples/, dataset_dir data/ under the working directory."""
    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Only what keeps each run to seconds on a CPU: the model path, and fewer and shorter steps
def short(stage: str, tiny_model) -> list[str]:
    name = {"dpo": "dpo", "kto": "kto", "rm": "rm", "pt": "pt"}[stage]
    length = {"pt": "stages.pt.block_size=64", "rm": "stages.rm.trainer.max_length=1024"}.get(
        stage, f"stages.{name}.trainer.max_length=128")
    return [f"model={tiny_model}", f"stages.{name}.trainer.max_steps=2", length,
            f"stages.{name}.trainer.dataset_num_proc=1"] if stage not in ("pt", "rm") else \
        [f"model={tiny_model}", f"stages.{name}.trainer.max_steps=2", length]


@pytest.mark.parametrize("stage", ["dpo", "kto", "rm", "pt"])
def test_the_recipe_trains_and_its_adapter_loads_with_peft(stage, lf_dir, tiny_model):
    path = lf_dir / "examples" / "train_lora" / RECIPES[stage]
    run_dir = run(str(path), short(stage, tiny_model))
    assert run_dir.resolve() == (lf_dir / yaml.safe_load(path.read_text())["output_dir"]).resolve()
    entry = read_manifest(run_dir)["stages"][stage]
    assert entry["status"] == "done", entry
    adapter = run_dir / stage / "model"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    head = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1) if stage == "rm" \
        else AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(head, str(adapter))
    trained = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert trained and any(bool(p.abs().sum() > 0) for p in trained)  # lora_B starts at zero: it was trained


@pytest.mark.parametrize("keys, kind, trainer", [
    ({"pref_loss": "orpo", "pref_beta": 0.2}, "orpo", {"beta": 0.2}),
    ({"pref_loss": "simpo", "pref_beta": 2.5, "simpo_gamma": 0.5, "pref_ftx": 0.1}, "simpo",
     {"beta": 2.5, "simpo_gamma": 0.5, "cpo_alpha": 0.1}),
])
def test_reference_free_pref_losses_are_their_own_stage_types(keys, kind, trainer):
    raw = {**recipe("dpo"), **keys}
    (translated,) = to_pipeline(raw)["stages"]
    assert translated["name"] == "dpo" and translated["type"] == kind
    assert {k: translated["trainer"][k] for k in trainer} == trainer
    assert load_config(raw).stages[0].type == kind  # and the stage's TRL config takes them
