"""LLaMA-Factory SFT recipes translate to posttrain pipelines and run unchanged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from posttrain.config import load_config
from posttrain.errors import ConfigError
from posttrain.integrations import llamafactory
from posttrain.integrations.llamafactory import is_recipe, to_pipeline
from tests.conftest import make_chats, write_jsonl

BASE = {"model_name_or_path": "models/base", "stage": "sft", "dataset": "d", "finetuning_type": "full"}


def e2e(test):
    """End-to-end: trains a tiny model through posttrain.pipeline.run (skipped until that module exists)."""
    return pytest.mark.slow(test)


def gpu(monkeypatch, *packages, trackers=()):
    monkeypatch.setattr(llamafactory, "cuda", lambda: True)
    monkeypatch.setattr(llamafactory, "has_package", lambda name: name in packages)
    monkeypatch.setattr(llamafactory, "trackers", lambda: list(trackers))


def contains(actual, expected) -> bool:
    """`expected` is a fragment of `actual`: every key it has, with the same value (recursively for dicts)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    return actual == expected


def stage_of(pipeline: dict) -> dict:
    (stage,) = pipeline["stages"]
    return stage


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "posttrain" and r.levelno == logging.WARNING)


# --- translation tables ---------------------------------------------------------------------------

TOP = [
    ({}, {"name": "sft", "model": "models/base"}),
    ({"output_dir": "saves/llama3-8b/full/sft_stage 1/"},
     {"name": "sft_stage_1", "output_dir": "saves/llama3-8b/full/sft_stage 1/"}),
    ({"output_dir": "."}, {"name": "sft", "output_dir": "."}),
    ({"trust_remote_code": True}, {"trust_remote_code": True}),
    ({"seed": 7}, {"seed": 7}),
    ({"flash_attn": "sdpa"}, {"attn_implementation": "sdpa"}),
    ({"flash_attn": "disabled"}, {"attn_implementation": "eager"}),
]


@pytest.mark.parametrize("recipe, expected", TOP)
def test_top_level_keys(recipe, expected):
    pipeline = to_pipeline({**BASE, **recipe}, None)
    assert contains(pipeline, expected), pipeline
    assert "output_dir" not in stage_of(pipeline).get("trainer", {})


def test_flash_attn_auto_leaves_attention_unset():
    assert "attn_implementation" not in to_pipeline({**BASE, "flash_attn": "auto"}, None)


STAGE = [
    ({}, {"name": "sft", "type": "sft", "finetuning": "full", "data": {"dataset": "d", "dataset_dir": "data"}}),
    ({"dataset": "a, b", "dataset_dir": "./my_data"}, {"data": {"dataset": "a,b", "dataset_dir": "./my_data"}}),
    ({"dataset": ["a", "b"]}, {"data": {"dataset": "a,b"}}),
    ({"eval_dataset": "e1,e2", "max_samples": 100},
     {"data": {"dataset": "d", "max_samples": 100},
      "eval_data": {"dataset": "e1,e2", "dataset_dir": "data", "max_samples": 100}}),
    ({"max_samples": -1}, {"data": {"dataset": "d", "dataset_dir": "data"}}),
    ({"val_size": 0.1}, {"val_size": 0.1}),
    ({"template": "qwen"}, {"template": "qwen"}),
    ({"template": "llama3"}, {"template": "llama3"}),
    ({"plot_loss": True}, {"plot_loss": True}),
    ({"finetuning_type": "lora"}, {"finetuning": "lora", "lora": {"dropout": 0.0}}),
    ({"finetuning_type": "lora", "lora_rank": 64, "lora_alpha": 128, "lora_dropout": 0.1, "lora_target": "all"},
     {"finetuning": "lora", "lora": {"r": 64, "alpha": 128, "dropout": 0.1, "target_modules": "all-linear"}}),
    ({"finetuning_type": "lora", "lora_target": "q_proj, v_proj"}, {"lora": {"target_modules": ["q_proj", "v_proj"]}}),
    ({"finetuning_type": "lora", "quantization_bit": 4}, {"finetuning": "qlora"}),
    ({"finetuning_type": "lora", "additional_target": "embed_tokens,lm_head"},
     {"lora": {"modules_to_save": ["embed_tokens", "lm_head"]}}),
]


@pytest.mark.parametrize("recipe, expected", STAGE)
def test_stage_keys(recipe, expected):
    stage = stage_of(to_pipeline({**BASE, **recipe}, None))
    assert contains(stage, expected), stage


def test_finetuning_defaults_to_lora_as_in_llamafactory():
    recipe = {k: v for k, v in BASE.items() if k != "finetuning_type"}
    stage = stage_of(to_pipeline(recipe, None))
    assert stage["finetuning"] == "lora"
    assert "alpha" not in stage["lora"]  # posttrain's default is LLaMA-Factory's: 2 x rank


@pytest.mark.parametrize("template", ["default", "empty"])
def test_default_and_empty_templates_leave_the_tokenizers_own(template, caplog):
    assert "template" not in stage_of(to_pipeline({**BASE, "template": template}, None))
    assert not warnings_of(caplog)


TRAINER = [
    ({}, {"max_length": 2048, "packing": False, "gradient_checkpointing": True}),
    ({"cutoff_len": 4096}, {"max_length": 4096}),
    ({"per_device_train_batch_size": 2, "gradient_accumulation_steps": 8, "learning_rate": 1.0e-4,
      "num_train_epochs": 3.0, "max_steps": -1, "lr_scheduler_type": "cosine", "logging_steps": 5,
      "save_steps": 500, "resume_from_checkpoint": "saves/x/checkpoint-500", "weight_decay": 0.01,
      "optim": "adamw_torch", "save_total_limit": 3, "data_seed": 42, "ddp_timeout": 1800},
     {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 8, "learning_rate": 1.0e-4,
      "num_train_epochs": 3.0, "max_steps": -1, "lr_scheduler_type": "cosine", "logging_steps": 5,
      "save_steps": 500, "resume_from_checkpoint": "saves/x/checkpoint-500", "weight_decay": 0.01,
      "optim": "adamw_torch", "save_total_limit": 3, "data_seed": 42, "ddp_timeout": 1800}),
    ({"eval_dataset": "e", "eval_strategy": "steps", "eval_steps": 10}, {"eval_strategy": "steps", "eval_steps": 10}),
    ({"val_size": 0.1, "evaluation_strategy": "steps"}, {"eval_strategy": "steps"}),
    ({"warmup_ratio": 0.1}, {"warmup_steps": 0.1}),
    ({"warmup_ratio": 0.1, "warmup_steps": 20}, {"warmup_steps": 20}),
    ({"preprocessing_num_workers": 16}, {"dataset_num_proc": 16}),
    ({"packing": True}, {"packing": True}),
    ({"neat_packing": True}, {"packing": True}),
    ({"train_on_prompt": True}, {"assistant_only_loss": False}),
    ({"disable_gradient_checkpointing": True}, {"gradient_checkpointing": False}),
    ({"bf16": False, "fp16": False}, {"bf16": False, "fp16": False}),
    ({"report_to": "none"}, {"report_to": "none"}),
    ({"report_to": []}, {"report_to": "none"}),
    ({"resume_from_checkpoint": "", "deepspeed": ""}, {}),
]


@pytest.mark.parametrize("recipe, expected", TRAINER)
def test_trainer_keys(recipe, expected, caplog):
    trainer = stage_of(to_pipeline({**BASE, **recipe}, None)).get("trainer", {})
    assert contains(trainer, expected), trainer
    assert "output_dir" not in trainer
    assert not warnings_of(caplog)


def test_warmup_ratio_zero_sets_nothing():
    assert "warmup_steps" not in stage_of(to_pipeline({**BASE, "warmup_ratio": 0.0}, None))["trainer"]


def test_cuda_machine_keeps_precision_deepspeed_flash_attention_and_trackers(monkeypatch, caplog):
    gpu(monkeypatch, "deepspeed", "flash_attn", "liger_kernel", trackers=["wandb"])
    pipeline = to_pipeline({**BASE, "bf16": True, "tf32": True, "deepspeed": "ds_z3_config.json",
                            "flash_attn": "fa2", "report_to": "wandb", "enable_liger_kernel": True}, None)
    assert pipeline["dtype"] == "bf16" and pipeline["attn_implementation"] == "flash_attention_2"
    assert contains(stage_of(pipeline)["trainer"], {"bf16": True, "tf32": True, "report_to": "wandb",
                                                    "use_liger_kernel": True})
    assert stage_of(pipeline)["deepspeed"] == "zero3"  # LLaMA-Factory's ZeRO-3 file, as posttrain ships it
    assert not warnings_of(caplog)


def test_fp16_on_cuda_loads_fp32_master_weights(monkeypatch):
    gpu(monkeypatch)
    pipeline = to_pipeline({**BASE, "fp16": True}, None)
    assert pipeline["dtype"] == "fp32" and stage_of(pipeline)["trainer"]["fp16"] is True


# --- warnings -------------------------------------------------------------------------------------

WARNINGS = [
    ({"do_train": False}, ["do_train", "always trains"], {}),
    ({"bf16": True}, ["bf16", "CUDA", "fp32"], {}),
    ({"fp16": True}, ["fp16", "CUDA", "fp32"], {}),
    ({"tf32": True}, ["tf32", "CUDA"], {}),
    ({"enable_liger_kernel": True}, ["enable_liger_kernel", "CUDA", "liger-kernel"], {}),
    ({"deepspeed": "ds_z3_config.json"}, ["deepspeed", "ds_z3_config.json", "deepspeed package", "CUDA",
                                          "plain DDP under --nproc"], {}),
    ({"ddp_backend": "nccl"}, ["ddp_backend", "--nproc", "gloo"], {}),
    ({"overwrite_output_dir": True}, ["overwrite_output_dir", "fingerprint", "--force"], {}),
    ({"flash_attn": "fa2"}, ["flash_attn", "fa2", "CUDA"], {}),
    ({"flash_attn": "fa9"}, ["flash_attn", "fa9"], {}),
    ({"report_to": "wandb"}, ["report_to", "wandb", "not installed"], {"report_to": "none"}),
    ({"report_to": ["wandb", "none"]}, ["wandb"], {"report_to": "none"}),
    ({"template": "qwen3"}, ["template", "qwen3", "tokenizer's own"], {}),
    ({"lora_rank": 16}, ["lora_rank", "full"], {}),
    ({"eval_strategy": "steps", "load_best_model_at_end": True},
     ["eval_strategy", "load_best_model_at_end", "no evaluation data"], {}),
    ({"overwrite_cache": True, "logging_dir": "./logs", "export_dir": "out", "use_badam": False},
     ["overwrite_cache: a loading or preprocessing detail posttrain sets itself",
      "logging_dir: not a key of LLaMA-Factory or of the stage's trainer config",
      "export_dir: an export setting of `llamafactory-cli export`"], {}),
    ({"finetuning_type": "lora", "quantization_bit": 4, "quantization_method": "hqq"},
     ["quantization_method", "hqq"], {}),
    ({"finetuning_type": "lora", "pissa_init": True, "pissa_convert": False},
     ["pissa_convert", "always saves a PiSSA adapter converted"], {}),
]


@pytest.mark.parametrize("recipe, words, trainer", WARNINGS)
def test_warnings_name_the_key(recipe, words, trainer, caplog):
    caplog.set_level(logging.WARNING, logger="posttrain")
    pipeline = to_pipeline({**BASE, **recipe}, Path("recipe.yaml"))
    text = warnings_of(caplog)
    for word in words:
        assert word in text, text
    assert text.startswith("recipe.yaml: ")
    stage = stage_of(pipeline)
    for key in recipe:  # a warned key reaches no config, unless the table says what it became
        assert key in trainer or key not in stage.get("trainer", {})
    assert contains(stage.get("trainer", {}), trainer)
    assert "dtype" not in pipeline and "attn_implementation" not in pipeline
    assert stage["finetuning"] != "full" or "lora" not in stage


def test_no_warning_for_keys_that_are_translated(caplog):
    to_pipeline({**BASE, "do_train": True, "overwrite_output_dir": False, "output_dir": "o", "plot_loss": True,
                 "cutoff_len": 10, "template": "chatml", "packing": False, "flash_attn": "auto"}, None)
    assert not warnings_of(caplog)


# --- errors ---------------------------------------------------------------------------------------

ERRORS = [
    ({"stage": "ppo"}, ["stage", "'ppo'", "sft, pt, rm, dpo, kto", "grpo"]),
    ({"stage": "dpo", "pref_loss": "kto_pair"}, ["pref_loss", "kto_pair", "stage: kto"]),
    ({"stage": "dpo", "pref_loss": "sigmoidd"}, ["pref_loss", "'sigmoidd'", "sigmoid, hinge, ipo, orpo, simpo"]),
    ({"stage": "pt", "quantization_bit": 4}, ["quantization_bit", "not for a pt stage"]),
    ({"stage": "dpo", "train_on_prompt": True}, ["train_on_prompt", "stage sft only"]),
    ({"finetuning_type": "badam"}, ["finetuning_type", "'badam'", "full", "lora", "freeze", "oft"]),
    ({"finetuning_type": "full", "use_dora": True}, ["use_dora", "LoRA option"]),
    ({"finetuning_type": "lora", "use_galore": True}, ["use_galore", "finetuning_type lora"]),
    ({"quantization_bit": 4}, ["quantization_bit", "lora"]),
    ({"finetuning_type": "lora", "quantization_bit": 8}, ["quantization_bit", "4 bits"]),
    ({"val_size": 100}, ["val_size", "fraction"]),
    ({"warmup_ratio": 1.5}, ["warmup_ratio", "[0, 1)"]),
    ({"dataset": None}, ["dataset", "missing", "dataset_info.json"]),
]


@pytest.mark.parametrize("recipe, words", ERRORS)
def test_errors_say_what_is_wrong(recipe, words):
    with pytest.raises(ConfigError) as info:
        to_pipeline({**BASE, **recipe}, Path("r.yaml"))
    message = str(info.value)
    assert message.startswith("r.yaml: ")
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("stage", ["dpo", "kto", "rm", "pt"])
def test_freeze_tuning_reaches_every_stage(stage):
    pipeline = to_pipeline({**BASE, "stage": stage, "finetuning_type": "freeze", "freeze_trainable_layers": 3},
                           Path("r.yaml"))
    converted = pipeline["stages"][0]
    assert converted["finetuning"] == "freeze" and converted["freeze"]["trainable_layers"] == 3, converted


def test_is_recipe():
    assert is_recipe(BASE)
    assert not is_recipe({"name": "x", "model": "m", "stages": []})
    assert not is_recipe({"model_name_or_path": "m"})


def test_load_config_translates_and_validates_a_recipe_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model_name_or_path: meta-llama/Meta-Llama-3-8B\nstage: sft\nfinetuning_type: lora\n"
                    "dataset: a,b\ntemplate: llama3\nlearning_rate: 1.0e-4\noutput_dir: saves/lora\n")
    config = load_config(path, ["model=/some/dir"])
    assert config.model == "/some/dir" and config.name == "lora" and config.output_dir == "saves/lora"
    stage = config.stage("sft")
    assert stage.finetuning == "lora" and stage.template == "llama3"
    assert stage.trainer["learning_rate"] == 1.0e-4 and stage.data[0].dataset == "a,b"


def test_load_config_reports_bad_values_by_their_posttrain_path(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model_name_or_path: m\nstage: sft\ndataset: a\nlora_rank: 0\n")
    with pytest.raises(ConfigError, match="lora.r"):
        load_config(path)


# --- the seeds' recipes ---------------------------------------------------------------------------

SEED_000 = """\
### model
model_name_or_path: /shared/models/llama3
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: full
deepspeed: recipe/deepspeed/ds_z3_config.json  # choices: [ds_z0_config.json, ds_z2_config.json, ds_z3_config.json]

### dataset
dataset: stage_1
template: llama3
cutoff_len: 8192
max_samples: 1000000
overwrite_cache: true
preprocessing_num_workers: 2
dataloader_num_workers: 0

### output
output_dir: checkpoints/llama3-8b/full/sft
logging_steps: 10
save_steps: 7372
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: wandb  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
learning_rate: 1.0e-6
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.0
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null

## eval
eval_dataset: stage_1_eval
per_device_eval_batch_size: 1
eval_strategy: steps
eval_steps: 3500
"""

SEED_002 = """\
model_name_or_path: ./model
trust_remote_code: true
finetuning_type: lora
lora_target: all
lora_rank: 64
lora_alpha: 128
lora_dropout: 0.1
dataset_dir: ./data
dataset: reward_model_full
template: qwen
cutoff_len: 4096
max_samples: -1
overwrite_cache: true
preprocessing_num_workers: 2
stage: sft
do_train: true
learning_rate: 1.0e-4
lr_scheduler_type: cosine
warmup_ratio: 0.1
weight_decay: 0.01
max_grad_norm: 1.0
num_train_epochs: 3.0
max_steps: -1
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
bf16: true
fp16: false
deepspeed: ""
output_dir: ./saves/reward_model_training
overwrite_output_dir: true
logging_steps: 5
report_to: []
save_steps: 500
save_total_limit: 3
resume_from_checkpoint: ""
seed: 42
"""


def seed_000_data(data_dir: Path) -> None:
    """Alpaca records registered as stage_1 / stage_1_eval, as in TrialPanorama's train/sft/data."""
    def alpaca(chats):
        return [{"instruction": c["messages"][0]["content"], "input": "", "output": c["messages"][1]["content"]}
                for c in chats]

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "stage_1.json").write_text(json.dumps(alpaca(make_chats(24, seed=1))))
    (data_dir / "stage_1_eval.json").write_text(json.dumps(alpaca(make_chats(4, seed=2))))
    (data_dir / "dataset_info.json").write_text(json.dumps({
        "stage_1": {"file_name": "stage_1.json"}, "stage_1_eval": {"file_name": "stage_1_eval.json"}}))


def seed_002_data(data_dir: Path) -> None:
    """ShareGPT records registered as reward_model_full, as DataEva's converter writes them."""
    records = [{"conversations": [{"from": "human", "value": c["messages"][0]["content"]},
                                  {"from": "gpt", "value": c["messages"][1]["content"]}],
                "metadata": {"evaluation_type": "clip"}} for c in make_chats(24, seed=3)]
    write_jsonl(data_dir / "reward_model_full.jsonl", records)
    (data_dir / "dataset_info.json").write_text(json.dumps({"reward_model_full": {
        "file_name": "reward_model_full.jsonl", "formatting": "sharegpt", "columns": {"messages": "conversations"}}}))


def test_seed_000_full_sft_recipe(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.yaml").write_text(SEED_000)
    config = load_config("recipe.yaml")
    assert (config.name, config.model, config.output_dir) == (
        "sft", "/shared/models/llama3", "checkpoints/llama3-8b/full/sft")
    assert config.trust_remote_code is True and config.dtype == "auto"
    stage = config.stage("sft")
    assert (stage.finetuning, stage.template, stage.plot_loss) == ("full", "llama3", True)
    assert (stage.data[0].dataset, stage.data[0].dataset_dir, stage.data[0].max_samples) == ("stage_1", "data", 1000000)
    assert (stage.eval_data[0].dataset, stage.eval_data[0].dataset_dir, stage.eval_data[0].max_samples) == (
        "stage_1_eval", "data", 1000000)
    assert stage.trainer == {
        "max_length": 8192, "packing": False, "gradient_checkpointing": True, "dataset_num_proc": 2,
        "dataloader_num_workers": 0, "logging_steps": 10, "save_steps": 7372, "save_only_model": False,
        "report_to": "none", "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-6, "num_train_epochs": 3.0, "lr_scheduler_type": "cosine", "ddp_timeout": 180000000,
        "per_device_eval_batch_size": 1, "eval_strategy": "steps", "eval_steps": 3500,
    }
    text = warnings_of(caplog)
    for key in ("deepspeed", "bf16", "report_to", "overwrite_output_dir", "overwrite_cache"):
        assert f"\n  {key}: " in text, text
    assert text.startswith("recipe.yaml: LLaMA-Factory keys not applied (5):\n")  # one summary


def test_seed_000_on_a_gpu_machine_with_deepspeed_and_wandb(tmp_path, monkeypatch):
    gpu(monkeypatch, "deepspeed", trackers=["wandb"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.yaml").write_text(SEED_000)
    config = load_config("recipe.yaml")
    trainer = config.stage("sft").trainer
    assert config.dtype == "bf16"
    assert (trainer["bf16"], trainer["report_to"], config.stage("sft").deepspeed) == (True, "wandb", "zero3")
    assert "deepspeed" not in trainer


def test_a_deepspeed_file_that_exists_is_kept_as_named(tmp_path, monkeypatch):
    gpu(monkeypatch, "deepspeed")
    own = tmp_path / "ds_z3_config.json"
    own.write_text("{}")
    assert stage_of(to_pipeline({**BASE, "deepspeed": str(own)}, None))["deepspeed"] == str(own)


def test_seed_002_lora_recipe(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.yaml").write_text(SEED_002)
    config = load_config("recipe.yaml")
    assert (config.name, config.model, config.output_dir, config.seed) == (
        "reward_model_training", "./model", "./saves/reward_model_training", 42)
    stage = config.stage("sft")
    assert (stage.finetuning, stage.template) == ("lora", "qwen")
    lora = stage.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (64, 128, 0.1, "all-linear")
    assert (stage.data[0].dataset, stage.data[0].dataset_dir, stage.data[0].max_samples) == ("reward_model_full", "./data", None)
    assert stage.eval_data is None and stage.val_size == 0
    assert stage.trainer == {
        "max_length": 4096, "packing": False, "gradient_checkpointing": True, "dataset_num_proc": 2,
        "learning_rate": 1.0e-4, "lr_scheduler_type": "cosine", "warmup_steps": 0.1, "weight_decay": 0.01,
        "max_grad_norm": 1.0, "num_train_epochs": 3.0, "max_steps": -1, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 8, "fp16": False, "logging_steps": 5, "report_to": "none",
        "save_steps": 500, "save_total_limit": 3,
    }
    text = warnings_of(caplog)
    assert "deepspeed" not in text and "resume_from_checkpoint" not in text  # empty means unset
    assert "\n  bf16: " in text and "\n  overwrite_output_dir: " in text


# --- end to end -----------------------------------------------------------------------------------

def _changed(before: dict, after: dict) -> bool:
    import torch

    return any(not torch.equal(before[name], after[name]) for name in before if name in after)


def _weights(model) -> dict:
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


@e2e
def test_seed_000_recipe_trains_end_to_end(tiny_model, tmp_path, monkeypatch):
    pipeline = pytest.importorskip("posttrain.pipeline")
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)
    seed_000_data(tmp_path / "data")  # dataset_dir defaults to data/ under the working directory
    (tmp_path / "recipe.yaml").write_text(SEED_000)
    overrides = [f"model={tiny_model}", "stages.sft.trainer.max_steps=3", "stages.sft.trainer.report_to=none",
                 "stages.sft.trainer.max_length=256", "stages.sft.trainer.dataset_num_proc=1",
                 "stages.sft.trainer.logging_steps=1"]
    run_dir = pipeline.run("recipe.yaml", overrides)
    assert Path(run_dir).resolve() == (tmp_path / "checkpoints/llama3-8b/full/sft").resolve()
    # the recipe's plot_loss: true
    assert (Path(run_dir) / "sft" / "training_loss.png").exists()
    base = _weights(AutoModelForCausalLM.from_pretrained(tiny_model))
    trained = _weights(AutoModelForCausalLM.from_pretrained(Path(run_dir) / "sft" / "model"))
    assert _changed(base, trained)


@e2e
def test_seed_002_recipe_trains_a_lora_adapter_end_to_end(tiny_model, tmp_path, monkeypatch):
    pipeline = pytest.importorskip("posttrain.pipeline")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)
    seed_002_data(tmp_path / "data")
    (tmp_path / "recipe.yaml").write_text(SEED_002)
    run_dir = pipeline.run("recipe.yaml", [f"model={tiny_model}", "stages.sft.trainer.max_steps=3",
                                           "stages.sft.trainer.report_to=none", "stages.sft.trainer.max_length=256",
                                           "stages.sft.trainer.dataset_num_proc=1",
                                           "stages.sft.trainer.gradient_accumulation_steps=1"])
    adapter = Path(run_dir) / "sft" / "model"
    assert (adapter / "adapter_config.json").exists()
    base_model = AutoModelForCausalLM.from_pretrained(tiny_model)
    base = _weights(base_model)
    model = PeftModel.from_pretrained(base_model, str(adapter))
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and any(bool(torch.any(p != 0)) for p in lora_b)  # lora_B starts at zero
    assert _changed(base, _weights(model.merge_and_unload()))


# --- method keys ------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe, expected", [
    ({"finetuning_type": "freeze", "freeze_trainable_layers": -1, "freeze_trainable_modules": "mlp",
      "freeze_extra_modules": "embed_tokens,norm"},
     {"finetuning": "freeze", "freeze": {"trainable_layers": -1, "trainable_modules": "mlp",
                                         "extra_modules": ["embed_tokens", "norm"]}}),
    ({"finetuning_type": "oft", "oft_block_size": 16, "lora_target": "q_proj,v_proj"},
     {"finetuning": "oft", "oft": {"block_size": 16, "target_modules": ["q_proj", "v_proj"]}}),
    ({"finetuning_type": "lora", "use_rslora": True, "use_dora": True, "pissa_init": True},
     {"lora": {"rslora": True, "dora": True, "init": "pissa_niter_16"}}),
    ({"use_dft_loss": True}, {"trainer": {"loss_type": "dft"}}),
    ({"use_muon": True}, {"optimizer": "muon"}),
    ({"finetuning_type": "lora", "loraplus_lr_ratio": 16, "loraplus_lr_embedding": 1e-6},
     {"lora": {"plus_lr_ratio": 16.0, "plus_lr_embedding": 1e-6}}),
    ({"use_galore": True, "galore_layerwise": True, "galore_rank": 128, "galore_scale": 2.0},
     {"trainer": {"optim": "galore_adamw_layerwise", "optim_target_modules": "all-linear",
                  "optim_args": "rank=128,scale=2.0"}}),
    ({"use_apollo": True, "apollo_target": "q_proj", "apollo_rank": 64},
     {"trainer": {"optim": "apollo_adamw", "optim_target_modules": ["q_proj"], "optim_args": "rank=64"}}),
])
def test_method_keys_map_to_what_applies_them(recipe, expected):
    stage = stage_of(to_pipeline({**BASE, **recipe}))
    assert contains(stage, expected), stage
    load_config(to_pipeline({**BASE, **recipe}))  # and the pipeline validates, trainer keys included


def test_the_log_names_where_the_model_goes_after_the_overrides(caplog, tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "examples" / "llamafactory" / "sft_lora.yaml"
    with caplog.at_level(logging.INFO, logger="posttrain"):
        config = load_config(recipe, [f"output_dir={tmp_path / 'elsewhere'}"])
    said = [r.getMessage() for r in caplog.records if "the model is written to" in r.getMessage()]
    assert said == [f"the model is written to {tmp_path / 'elsewhere'}/{config.stages[0].name}/model"]
