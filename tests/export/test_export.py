"""posttrain/export.py: a merged export is the same model as base + adapter (chained adapters merged in order),
16-bit exports are saved in their dtype and verified, and bad input or a failed check writes nothing."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from posttrain.errors import PosttrainError
from posttrain.export import TOLERANCE, Lineage, VerifyError, export, lineage

PROMPT = [{"role": "user", "content": "the patient trial dose"}]


def make_adapter(base, path, seed: int):
    """A LoRA adapter with random non-zero weights (a fresh one changes nothing: its B starts at zero)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                        task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(str(path))
    return path


def prompt_ids(tokenizer):
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


@pytest.fixture(scope="module")
def adapter(tiny_model, tmp_path_factory):
    return make_adapter(tiny_model, tmp_path_factory.mktemp("adapter") / "lora", seed=1)


@pytest.fixture(scope="module")
def exported(tiny_model, adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "merged"
    return out, export(str(tiny_model), str(adapter), out=out)


def test_export_loads_with_plain_transformers_and_matches_base_plus_adapter(exported, tiny_model, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = exported
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(adapter)).eval()
    ids = prompt_ids(tokenizer)
    with torch.no_grad():
        got, expected = model(input_ids=ids).logits, reference(input_ids=ids).logits
        with reference.disable_adapter():
            base = reference(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (expected - base).abs().max() > 0.1  # the adapter does change the model: the match means it is merged
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_token_id
    # as readable as any file the user creates (transformers writes its own 0600): a server may be another user
    mask = os.umask(0)
    os.umask(mask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o666 & ~mask}
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask


@pytest.mark.parametrize("dtype, torch_dtype, name", [("fp16", torch.float16, "float16"),
                                                      ("bf16", torch.bfloat16, "bfloat16")])
def test_half_precision_exports_are_saved_in_their_dtype(tiny_model, adapter, tmp_path, dtype, torch_dtype, name):
    from safetensors import safe_open

    summary = export(str(tiny_model), str(adapter), out=tmp_path / dtype, dtype=dtype, verify=True)
    with safe_open(str(tmp_path / dtype / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(key).dtype for key in f.keys()} == {torch_dtype}
    assert json.loads((tmp_path / dtype / "config.json").read_text())["dtype"] == name
    check = summary["verify"]
    assert check["passed"] and check["dtype"] == dtype and check["tolerance"] == pytest.approx(
        TOLERANCE[dtype] * check["scale"])
    assert 0 < check["max_abs_diff"]  # rounded to 16 bits: close, not equal


def test_an_adapter_as_model_finds_its_base(tiny_model, adapter):
    assert lineage(str(adapter)) == Lineage(str(tiny_model), [str(adapter)])


def test_an_adapter_naming_an_adapter_as_base_is_a_chain_and_a_loop_is_an_error(tiny_model, adapter, tmp_path):
    """What a LoRA stage trained on a LoRA stage writes (training/finish.py), with no run directory around it."""
    second = make_adapter(tiny_model, tmp_path / "second", seed=6)
    config = json.loads((second / "adapter_config.json").read_text())
    (second / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(adapter)}))
    assert lineage(str(second)) == Lineage(str(tiny_model), [str(adapter), str(second)])
    (second / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(second)}))
    with pytest.raises(PosttrainError, match="name each other as base"):
        lineage(str(second))


def test_chained_lora_stages_merge_in_order(tiny_model, tmp_path):
    """A LoRA stage started from a LoRA stage names only the first base; the run's manifest gives the chain."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    first, second = make_adapter(tiny_model, run / "a" / "model", 2), make_adapter(tiny_model, run / "b" / "model", 3)
    (run / "manifest.json").write_text(json.dumps({"name": "chain", "stage_order": ["a", "b"], "stages": {
        "a": {"type": "sft", "status": "done", "input_model": str(tiny_model), "fingerprint": "f" * 64},
        "b": {"type": "sft", "status": "done", "input_model": str(first), "fingerprint": "e" * 64}}}))
    assert lineage(str(second)) == Lineage(str(tiny_model), [str(first), str(second)])
    export(str(second), out=tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    model = PeftModel.from_pretrained(PeftModel.from_pretrained(model, str(first)).merge_and_unload(), str(second))
    ids = prompt_ids(AutoTokenizer.from_pretrained(str(tiny_model)))
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))(input_ids=ids).logits,
                                   model(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Pipeline `chain`" in card and "| b | sft | done | `eeeeeeeeeeeeeeee` | yes |" in card
    assert "| a | sft | done | `ffffffffffffffff` | yes |" in card


def _nothing_written(parent, name):
    return not (parent / name).exists() and not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_bad_input_writes_nothing(tiny_model, tmp_path):
    with pytest.raises(PosttrainError, match="no such model directory"):
        export(str(tmp_path / "absent"), out=tmp_path / "out")
    not_adapter = tmp_path / "not_adapter"
    not_adapter.mkdir()
    with pytest.raises(PosttrainError, match="no adapter_config.json"):
        export(str(tiny_model), str(not_adapter), out=tmp_path / "out")
    with pytest.raises(PosttrainError, match="neither a model directory"):
        export(str(not_adapter), out=tmp_path / "out")
    with pytest.raises(PosttrainError, match="dtype: expected one of bf16, fp16, fp32"):
        export(str(tiny_model), out=tmp_path / "out", dtype="int8")
    assert _nothing_written(tmp_path, "out")


def test_a_failed_verify_leaves_nothing(tiny_model, adapter, tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCE, "fp32", -1.0)
    with pytest.raises(VerifyError, match="nothing was written"):
        export(str(tiny_model), str(adapter), out=tmp_path / "out", verify=True)
    assert _nothing_written(tmp_path, "out")


def test_a_non_empty_out_needs_force(tiny_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PosttrainError, match="not empty; pass --force"):
        export(str(tiny_model), out=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # --force replaces an earlier export or model, never a folder of other files (`--out ~ --force`)
    with pytest.raises(PosttrainError, match="not a model directory .*--force replaces only an earlier export"):
        export(str(tiny_model), out=out, force=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    export(str(tiny_model), out=out)
    (out / "stale.txt").write_text("from the earlier export")
    export(str(tiny_model), out=out, force=True)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the replaced export is gone too
    with pytest.raises(PosttrainError, match="holds the model being exported"):
        export(str(out), out=out, force=True)
    with pytest.raises(PosttrainError, match="holds the model being exported"):
        export(str(out), out=tmp_path, force=True)  # its parent: replacing it would delete the model
    assert (out / "model.safetensors").is_file()
