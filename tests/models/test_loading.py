"""posttrain/models/loading.py: tokenizer + template, dtype, LoRA adapters merged into their base, QLoRA's needs."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from posttrain.errors import ConfigError, PosttrainError
from posttrain.models import loading
from posttrain.models.loading import is_adapter_dir, load_model, load_tokenizer, lora_config, resolve_dtype
from posttrain.models.templates import CHATML, LLAMA3


@pytest.fixture
def no_template_model(tiny_model, tmp_path):
    """The tiny model dir without its chat template."""
    path = tmp_path / "no-template"
    shutil.copytree(tiny_model, path)
    (path / "chat_template.jinja").unlink()
    assert "chat_template" not in json.loads((path / "tokenizer_config.json").read_text())
    return path


def test_load_tokenizer_keeps_the_models_template(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    assert tokenizer.chat_template == CHATML
    assert tokenizer.pad_token == "<|endoftext|>"


def test_tokenizer_without_a_template_is_a_config_error(no_template_model):
    with pytest.raises(ConfigError) as info:
        load_tokenizer(str(no_template_model))
    assert str(info.value) == (f"{no_template_model}: the tokenizer has no chat template; name one with `template:` "
                               "(chatml, qwen, llama3, mistral)")


def test_named_template_applies_to_a_tokenizer_without_one(no_template_model):
    tokenizer = load_tokenizer(str(no_template_model), template="chatml")
    assert tokenizer.chat_template == CHATML
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == \
        "<|im_start|>user\nhi<|im_end|>\n"


def test_named_template_overrides_the_models(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model), template="llama3")
    assert tokenizer.chat_template == LLAMA3
    assert load_tokenizer(str(tiny_model)).chat_template == CHATML  # the model dir is unchanged


def test_unknown_template_name(tiny_model):
    with pytest.raises(ConfigError, match="did you mean 'mistral'"):
        load_tokenizer(str(tiny_model), template="mistrall")


def test_missing_model_dir(tmp_path):
    missing = tmp_path / "nope"
    where = re.escape(str(missing))
    with pytest.raises(PosttrainError, match=f"^{where}: cannot load the tokenizer; expected a local directory: "):
        load_tokenizer(str(missing))
    with pytest.raises(PosttrainError, match=f"^{where}: cannot load the model; expected a local directory: "):
        load_model(str(missing))


def test_resolve_dtype(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype() is torch.float32
    assert resolve_dtype("auto") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("fp16") is torch.float16
    assert resolve_dtype("fp32") is torch.float32
    with pytest.raises(ConfigError, match="^dtype: expected auto, bf16, fp16 or fp32, got 'float32'$"):
        resolve_dtype("float32")


def test_load_model_on_cpu_is_fp32(tiny_model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = load_model(str(tiny_model))
    assert model.dtype == torch.float32
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert load_model(str(tiny_model), dtype="bf16").dtype == torch.bfloat16


def test_lora_adapter_dir_is_merged_into_its_base(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))  # random B: the adapter changes outputs
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert is_adapter_dir(adapter) and not is_adapter_dir(tiny_model)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model)

    ids = torch.tensor([[3, 17, 42, 99, 7]])
    with torch.no_grad():
        expected = peft_model(ids).logits
        merged = load_model(str(adapter))
        got = merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model)(ids).logits
    assert type(merged).__name__ == "Qwen2ForCausalLM"  # merged and unloaded, not a PeftModel
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3  # the adapter was applied


def test_adapter_without_a_base_is_a_clear_error(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    with pytest.raises(PosttrainError) as info:
        load_model(str(adapter))
    assert str(info.value) == (f"{adapter}/adapter_config.json: base_model_name_or_path: missing; "
                               "cannot find the base model")


def test_qlora_without_cuda_is_a_config_error(tiny_model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = "finetuning: qlora needs a CUDA GPU; none is present. Use `lora` on this machine."
    with pytest.raises(ConfigError) as info:
        loading.gpu.require_qlora()
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        load_model(str(tiny_model), quantize_4bit=True)
    assert str(info.value) == message


def test_lora_config_from_the_stage_block():
    from posttrain.config import LoraSpec

    config = lora_config(LoraSpec())
    assert (config.r, config.lora_alpha, config.lora_dropout, config.target_modules) == (8, 16, 0.05, "all-linear")
    config = lora_config(LoraSpec(r=4, alpha=5, dropout=0.0, target_modules="q_proj, v_proj"))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 5, 0.0)
    assert set(config.target_modules) == {"q_proj", "v_proj"}
    assert lora_config(LoraSpec(target_modules="all")).target_modules == "all-linear"


def test_an_adapter_trained_on_a_merged_adapter_loads_with_both_merged_in_order(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from posttrain.training.finish import _name_input_adapter

    def random_adapter(model, out):
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
        peft_model.save_pretrained(out)
        return peft_model

    first = tmp_path / "sft1" / "model"
    random_adapter(AutoModelForCausalLM.from_pretrained(tiny_model), first)
    second = tmp_path / "sft2" / "model"
    ids = torch.tensor([[3, 17, 42, 99, 7]])
    with torch.no_grad():
        stacked = random_adapter(load_model(str(first)), second)  # what the next LoRA stage trains on
        expected = stacked(ids).logits
        assert json.loads((second / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model)
        _name_input_adapter(second, str(first))
        assert json.loads((second / "adapter_config.json").read_text())["base_model_name_or_path"] == str(first)
        got = load_model(str(second))(ids).logits
        without_first = AutoModelForCausalLM.from_pretrained(tiny_model)
        from peft import PeftModel

        skipped = PeftModel.from_pretrained(without_first, str(second)).merge_and_unload()(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got - skipped).abs().max() > 1e-3  # the first adapter matters: naming only the first base lost it


def test_a_full_input_model_leaves_the_saved_adapter_as_peft_wrote_it(tiny_model, tmp_path):
    from posttrain.training.finish import _name_input_adapter

    saved = tmp_path / "model"
    saved.mkdir()
    (saved / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model)}))
    _name_input_adapter(saved, str(tiny_model))
    assert json.loads((saved / "adapter_config.json").read_text()) == {"base_model_name_or_path": str(tiny_model)}


def test_lora_modules_to_save_train_whole_and_stay_tied(tiny_model):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from posttrain.config import LoraSpec

    config = lora_config(LoraSpec(modules_to_save=["embed_tokens"]))
    assert config.modules_to_save == ["embed_tokens"] and config.ensure_weight_tying
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), config)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("embed_tokens" in name and "lora" not in name for name in trainable)
    assert lora_config(LoraSpec()).modules_to_save is None


def test_adapters_naming_each_other_as_base_are_a_clear_error(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for adapter, base in ((first, second), (second, first)):
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    with pytest.raises(PosttrainError, match="base_model_name_or_path leads back to"):
        load_model(str(first))
