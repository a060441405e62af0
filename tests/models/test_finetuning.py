"""finetuning: freeze trains only the chosen decoder layers (LLaMA-Factory's semantics: the last n, or the first
|n| for a negative n), and oft trains a peft OFT adapter; both through an SFT stage on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from posttrain.config.schema import FreezeSpec
from posttrain.errors import ConfigError
from posttrain.models.finetuning import freeze
from posttrain.pipeline import run
from tests.conftest import make_chats, write_jsonl


@pytest.fixture()
def model(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model)


def trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_the_last_n_layers_or_the_first_for_a_negative_n(model):
    last = model.config.num_hidden_layers - 1
    freeze(model, FreezeSpec(trainable_layers=1))
    assert trainable(model) and all(f"layers.{last}." in name for name in trainable(model))
    freeze(model, FreezeSpec(trainable_layers=-2))
    assert {name.split(".")[2] for name in trainable(model)} == {"0", "1"}


def test_modules_within_the_layers_and_extra_modules_outside_them(model):
    freeze(model, FreezeSpec(trainable_layers=1, trainable_modules="mlp", extra_modules=["embed_tokens"]))
    names = trainable(model)
    assert names and all(".mlp." in name or "embed_tokens" in name for name in names)
    assert any("embed_tokens" in name for name in names)


@pytest.mark.parametrize("spec, words", [
    (FreezeSpec(trainable_modules="attention"), ["trainable_modules", "'attention'", "mlp", "self_attn"]),
    (FreezeSpec(extra_modules=["head"]), ["extra_modules", "'head'", "embed_tokens"]),
    (FreezeSpec(trainable_layers=0), ["nothing is left to train"]),
])
def test_what_matches_nothing_is_an_error_naming_what_exists(model, spec, words):
    with pytest.raises(ConfigError) as info:
        freeze(model, spec, where="stages.sft.freeze")
    assert str(info.value).startswith("stages.sft.freeze") and all(w in str(info.value) for w in words), info.value


def sft(tmp_path, tiny_model, **stage):
    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(16, seed=4))
    return run({"name": "f", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
                "stages": [{"name": "sft", "type": "sft", "data": {"path": str(chats), "format": "openai"},
                            "trainer": {"max_steps": 3, "learning_rate": 1e-2, "per_device_train_batch_size": 4,
                                        "max_length": 128}, **stage}]})


def test_a_freeze_stage_changes_the_last_layer_only(tmp_path, tiny_model, model):
    run_dir = sft(tmp_path, tiny_model, finetuning="freeze", freeze={"trainable_layers": 1})
    after = AutoModelForCausalLM.from_pretrained(run_dir / "sft" / "model").state_dict()
    last = model.config.num_hidden_layers - 1
    changed = {name for name, weight in model.state_dict().items() if not torch.equal(weight, after[name])}
    assert changed and all(f"layers.{last}." in name for name in changed), changed


def test_an_oft_stage_saves_an_oft_adapter_that_peft_loads(tmp_path, tiny_model, model):
    run_dir = sft(tmp_path, tiny_model, finetuning="oft", oft={"block_size": 16})
    adapter = run_dir / "sft" / "model"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "OFT" and config["oft_block_size"] == 16
    before = {name: w.clone() for name, w in model.state_dict().items()}
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().state_dict()
    assert any(not torch.equal(before[name], merged[name]) for name in before if name in merged)


def test_lora_variants_reach_peft():
    from posttrain.config.schema import LoraSpec
    from posttrain.models.loading import lora_config

    config = lora_config(LoraSpec(rslora=True, dora=True, init="pissa_niter_4"))
    assert config.use_rslora and config.use_dora and config.init_lora_weights == "pissa_niter_4"
    assert not lora_config(LoraSpec()).use_rslora


def preference_stage(tmp_path, tiny_model, kind: str, **stage):
    from tests.stages.test_reward_model import pairs

    rows = pairs(16, 0)
    if kind == "kto":  # each pair's answers unpaired, one desirable and one not
        rows = [{"prompt": r["prompt"], "completion": r[side], "label": side == "chosen"}
                for r in rows for side in ("chosen", "rejected")]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    fmt = "unpaired_preference" if kind == "kto" else "preference"
    return run({"name": "f", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
                "stages": [{"name": kind, "type": kind, "data": {"path": str(data), "format": fmt},
                            "trainer": {"max_steps": 2, "learning_rate": 1e-2, "per_device_train_batch_size": 8,
                                        "max_length": 64}, **stage}]})


@pytest.mark.parametrize("kind", ["dpo", "kto", "orpo", "simpo"])
def test_the_preference_stages_freeze_as_sft_does(tmp_path, tiny_model, model, kind):
    run_dir = preference_stage(tmp_path, tiny_model, kind, finetuning="freeze", freeze={"trainable_layers": 1})
    after = AutoModelForCausalLM.from_pretrained(run_dir / kind / "model").state_dict()
    last = model.config.num_hidden_layers - 1
    changed = {name for name, weight in model.state_dict().items() if not torch.equal(weight, after[name])}
    assert changed and all(f"layers.{last}." in name for name in changed), changed


def test_a_dpo_stage_trains_an_oft_adapter(tmp_path, tiny_model):
    run_dir = preference_stage(tmp_path, tiny_model, "dpo", finetuning="oft", oft={"block_size": 16})
    assert json.loads((run_dir / "dpo" / "model" / "adapter_config.json").read_text())["peft_type"] == "OFT"


def test_a_grpo_stage_takes_freeze_and_oft(tmp_path, tiny_model):
    from trl import GRPOTrainer

    from tests.stages.test_grpo import config

    pipeline = config(tmp_path, tiny_model, max_steps=1)
    pipeline["stages"][0].update(finetuning="oft", oft={"block_size": 16})
    run_dir = run(pipeline)
    assert json.loads((run_dir / "rl" / "model" / "adapter_config.json").read_text())["peft_type"] == "OFT"
    built = []
    original = GRPOTrainer.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append({name for name, p in self.model.named_parameters() if p.requires_grad})

    pipeline = config(tmp_path / "freeze", tiny_model, max_steps=1)
    pipeline["stages"][0].update(finetuning="freeze", freeze={"trainable_layers": 1})
    GRPOTrainer.__init__ = spy
    try:
        run(pipeline)
    finally:
        GRPOTrainer.__init__ = original
    last = AutoModelForCausalLM.from_pretrained(tiny_model).config.num_hidden_layers - 1
    assert built[0] and all(f"layers.{last}." in name for name in built[0]), built[0]
