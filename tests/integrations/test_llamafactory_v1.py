"""LLaMA-Factory v1 recipes (its examples/v1, byte for byte, with its v1 demo data) are recognised: each trains or
stops with an error that names the key, and the SFT, DPO and freeze ones train on the tiny model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from posttrain.config import load_config
from posttrain.errors import ConfigError, PosttrainError
from posttrain.pipeline import read_manifest, run

FIXTURES = Path(__file__).parent / "llamafactory"
V1 = sorted((FIXTURES / "examples" / "v1").rglob("*.yaml"))
REFUSED = {
    "train_full_fsdp2_dynamic_batching.yaml": "batching_strategy: dynamic_batching batches by a token budget",
    "train_full_fsdp2_dynamic_padding_free.yaml": "batching_strategy: dynamic_padding_free batches by a token budget",
    "export_lora.yaml": "train_dataset: missing. A v1 recipe without one merges an adapter",
}


@pytest.fixture(autouse=True)
def lf_dir(tmp_path, monkeypatch):
    """LLaMA-Factory's layout: recipes under examples/, data/ under the working directory."""
    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", V1, ids=[p.name for p in V1])
def test_every_v1_example_is_recognised(path, caplog):
    recipe = Path("examples") / path.relative_to(FIXTURES / "examples")
    if path.name in REFUSED:
        with pytest.raises(ConfigError, match=REFUSED[path.name]):
            load_config(recipe)
        return
    caplog.set_level(logging.WARNING, logger="posttrain")
    config = load_config(recipe)
    (stage,) = config.stages
    assert stage.type == ("dpo" if "dpo" in path.name else "sft")
    assert stage.trainer["lr_scheduler_type"] == "constant"  # v1's: torch AdamW at a constant rate
    assert stage.trainer["weight_decay"] == (0.1 if path.name == "train_full_muon.yaml" else 0.01)
    assert "unknown key" not in caplog.text and "not a key of" not in caplog.text


def test_the_methods_map_to_posttrains(caplog):
    caplog.set_level(logging.WARNING, logger="posttrain")
    lora = load_config("examples/v1/train_lora/train_lora_sft.yaml").stages[0]
    assert (lora.finetuning, lora.lora.r, lora.lora.alpha, lora.lora.dropout, lora.lora.target_modules) == (
        "lora", 16, 32, 0.05, "all-linear")
    assert [(d.path, d.format) for d in lora.data] == [("data/identity.json", "alpaca"),
                                                        ("data/alpaca_en_demo.json", "alpaca")]
    assert lora.data[1].max_samples == 500 and lora.trainer["max_length"] == 2048
    assert "alpaca_en_demo.size: read as max_samples 500, the first rows; where the dataset has fewer, " \
           "LLaMA-Factory repeats its rows up to size" in caplog.text
    assert load_config("examples/v1/train_qlora/quantization.yaml").stages[0].finetuning == "qlora"
    freeze = load_config("examples/v1/train_freeze/train_freeze_sft.yaml").stages[0]
    assert (freeze.finetuning, freeze.freeze.trainable_layers, freeze.freeze.extra_modules) == ("freeze", 2, [])
    muon = load_config("examples/v1/train_full/train_full_muon.yaml").stages[0]
    assert muon.optimizer == "muon" and muon.trainer["weight_decay"] == 0.1
    assert muon.trainer["adam_beta2"] == 0.95
    packed = load_config("examples/v1/train_batching_strategy/train_full_fsdp2_padding_free.yaml").stages[0]
    assert packed.trainer["packing"] is True


def short(tiny_model) -> list[str]:
    return [f"model={tiny_model}", "max_steps=2", "cutoff_len=64", "micro_batch_size=2"]


@pytest.mark.parametrize("recipe, data, kind", [
    ("train_lora/train_lora_sft.yaml", None, "sft"),
    ("train_lora/train_lora_sft.yaml", "data/v1_sft_demo.jsonl", "sft"),
    ("train_lora/train_lora_dpo.yaml", "data/v1_dpo_demo.jsonl", "dpo"),
    ("train_freeze/train_freeze_sft.yaml", "data/v1_sft_demo.jsonl", "sft")])
def test_a_v1_recipe_trains(recipe, data, kind, tiny_model):
    overrides = short(tiny_model) + ([f"train_dataset={data}"] if data else [])
    if kind == "dpo":  # the demo pairs are long: posttrain leaves out a pair over max_length, and 64 leaves none
        overrides.append("cutoff_len=1024")
    run_dir = run(f"examples/v1/{recipe}", overrides)
    assert read_manifest(run_dir)["stages"][kind]["status"] == "done"
    assert (run_dir / kind / "model").is_dir()


def test_v1_samples_keep_their_turns_and_refuse_what_would_train_otherwise(lf_dir):
    from posttrain.data.formats import load_records

    records = [r for _, r in load_records("data/v1_sft_demo.jsonl", "llamafactory-v1", record="conversation")]
    assert records[0]["messages"] == [{"role": "user", "content": "hi"}, {
        "role": "assistant", "content": "Hello! I am {{name}}, an AI assistant developed by {{author}}. How can I "
                                        "assist you today?"}]
    pairs = [r for _, r in load_records("data/v1_dpo_demo.jsonl", "llamafactory-v1-pair", record="preference")]
    assert pairs[0]["prompt"][0]["role"] == "system" and pairs[0]["chosen"][0]["role"] == "assistant"
    row = json.loads(Path("data/v1_sft_demo.jsonl").read_text().splitlines()[0])
    row["messages"][0]["loss_weight"] = 1.0  # train on the user's turn too
    Path("weighted.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(PosttrainError, match=r"weighted.jsonl:1: messages\[0\].loss_weight: 1.0: posttrain trains "
                                             r"assistant turns \(1\) and no other \(0\)"):
        list(load_records("weighted.jsonl", "llamafactory-v1", record="conversation"))
    row["messages"][0].update(loss_weight=0.0, content=[{"type": "text", "value": "hi", "lang": "en"}])
    Path("keyed.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(PosttrainError, match=r"keyed.jsonl:1: messages\[0\].content\[0\].lang: a part key"):
        list(load_records("keyed.jsonl", "llamafactory-v1", record="conversation"))
    with pytest.raises(PosttrainError, match=r"v1_multimodal_demo.jsonl:1: messages\[0\].content\[0\].type: "
                                             r"'image_url'"):
        list(load_records("data/v1_multimodal_demo.jsonl", "llamafactory-v1", record="conversation"))


def test_compat_ignore_goes_on_without_a_v1_key(tmp_path):
    recipe = Path("examples/v1/train_batching_strategy/train_full_fsdp2_dynamic_batching.yaml")
    assert load_config(recipe, ["compat.ignore+=batching_strategy"]).stages[0].type == "sft"


def test_a_v1_run_folder_is_named_as_a_v0_one():
    import yaml

    from posttrain.integrations.llamafactory import to_pipeline

    recipe = yaml.safe_load(Path("examples/v1/train_lora/train_lora_sft.yaml").read_text())
    assert to_pipeline({**recipe, "output_dir": "outputs/lora_été"})["name"] == "lora__t_"
    assert to_pipeline({**recipe, "output_dir": "outputs/.."})["name"] == "sft"  # `..` is no folder name


def test_a_dataset_from_another_hub_is_refused(tmp_path):
    Path("ms.yaml").write_text("demo:\n  path: some/dataset\n  source: ms_hub\n")
    with pytest.raises(ConfigError, match=r"train_dataset ms.yaml: demo.source: 'ms_hub': posttrain reads local "
                                          r"files and the Hugging Face hub"):
        load_config("examples/v1/train_lora/train_lora_sft.yaml", ["train_dataset=ms.yaml"])


def test_a_quant_config_key_posttrain_does_not_read_is_refused():
    with pytest.raises(ConfigError, match=r"quant_config.quantization_type: not a key posttrain reads"):
        load_config("examples/v1/train_qlora/quantization.yaml", ["quant_config.quantization_type=fp4"])
