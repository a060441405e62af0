"""No LLaMA-Factory key is dropped unnoticed: LLaMA-Factory's own extras recipes either apply their key or stop
naming it, the keys not applied are one summary with reasons, adapter_name_or_path goes on training the adapter,
and do_predict evaluates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.config import load_config
from posttrain.errors import ConfigError
from posttrain.integrations.llamafactory import to_pipeline
from posttrain.pipeline import read_manifest, run

EXTRAS = Path(__file__).parent / "llamafactory" / "examples" / "extras"


def extra(name: str) -> dict:
    return yaml.safe_load((EXTRAS / name).read_text())


def summary(caplog) -> str:
    found = [r.getMessage() for r in caplog.records if "LLaMA-Factory keys not applied" in r.getMessage()]
    assert len(found) == 1, found  # one summary, not a warning per key
    return found[0]


@pytest.mark.parametrize("name, keys", [
    ("adam_mini/qwen2_full_sft.yaml", ["use_adam_mini"]), ("badam/llama3_full_sft.yaml", ["use_badam"]),
    ("eaft/qwen25_05b_eaft_full.yaml", ["use_eaft_loss"]), ("asft/qwen2_full_asft.yaml", ["use_asft_loss"]),
    ("mod/llama3_full_sft.yaml", ["mixture_of_depths"]), ("llama_pro/llama3_freeze_sft.yaml", ["use_llama_pro"]),
    ("fp8/llama3_fp8_fsdp_sft.yaml", ["fp8", "fp8_backend", "fp8_enable_fsdp_float8_all_gather"])])
def test_a_recipe_whose_key_changes_training_stops_naming_it_unless_told_to_go_on(name, keys, caplog):
    with pytest.raises(ConfigError) as error:
        to_pipeline(extra(name), Path(name))
    assert str(error.value).startswith(f"{name}: {', '.join(keys)}: change")
    assert f"compat: {{ignore: [{', '.join(keys)}]}}" in str(error.value)
    assert " ".join(f"--allow-ignored {k}" for k in keys) in str(error.value)
    caplog.set_level(logging.WARNING, logger="posttrain")
    to_pipeline({**extra(name), "compat": {"ignore": keys}}, Path(name))
    lines = summary(caplog).splitlines()
    for key in keys:
        (line,) = [line for line in lines if line.startswith(f"  {key}: ")]
        assert line.endswith(" (compat.ignore: trained without it)")


@pytest.mark.parametrize("name, where, expected", [
    ("galore/llama3_full_sft.yaml", ("trainer", "optim"), "galore_adamw_layerwise"),
    ("apollo/llama3_full_sft.yaml", ("trainer", "optim"), "apollo_adamw_layerwise"),
    ("dft/qwen2_full_sft.yaml", ("trainer", "loss_type"), "dft"),
    ("muon/qwen2_full_sft.yaml", ("optimizer",), "muon"),
    ("loraplus/llama3_lora_sft.yaml", ("lora", "plus_lr_ratio"), 16.0),
    ("pissa/llama3_lora_sft.yaml", ("lora", "init"), "pissa_niter_16")])
def test_a_recipe_whose_key_has_an_equivalent_applies_it(name, where, expected):
    (stage,) = to_pipeline(extra(name))["stages"]
    value = stage
    for part in where:
        value = value[part]
    assert value == expected


def test_the_cli_refuses_with_exit_2_and_goes_on_with_allow_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipe.yaml").write_text((EXTRAS / "badam" / "llama3_full_sft.yaml").read_text())
    result = CliRunner().invoke(app, ["validate", "recipe.yaml"])
    assert result.exit_code == 2 and "use_badam: changes what is trained" in result.output
    result = CliRunner().invoke(app, ["validate", "recipe.yaml", "--allow-ignored", "use_badam"])
    assert "use_badam: changes what is trained" not in result.output.split("LLaMA-Factory keys not applied")[0]
    assert "compat.ignore: trained without it" in result.output


def test_compat_must_be_a_list_of_keys():
    with pytest.raises(ConfigError, match=r"compat: expected \{ignore: \[KEY, \.\.\.\]\}"):
        to_pipeline({**extra("badam/llama3_full_sft.yaml"), "compat": {"skip": ["use_badam"]}})


def test_a_key_at_llamafactorys_default_is_no_loss_and_a_misspelt_one_is_named(caplog):
    caplog.set_level(logging.WARNING, logger="posttrain")
    to_pipeline({**extra("dft/qwen2_full_sft.yaml"), "use_badam": False, "mask_history": False,
                 "learning_rat": 1e-5, "export_dir": "out"})
    text = summary(caplog)
    assert "use_badam" not in text and "mask_history" not in text
    assert "learning_rat: not a key of LLaMA-Factory or of the stage's trainer config; did you mean " \
           "'learning_rate'?" in text
    assert "export_dir: an export setting of `llamafactory-cli export`" in text


def test_do_predict_alone_is_an_eval_stage_with_llamafactorys_generation():
    pipeline = to_pipeline(extra("nlg_eval/llama3_lora_predict.yaml"))
    (stage,) = pipeline["stages"]
    assert (stage["type"], stage["models"], stage["metrics"]) == ("eval", ["saves/llama3-8b/lora/sft"],
                                                                  ["bleu", "rouge"])
    assert (stage["do_sample"], stage["temperature"], stage["top_p"], stage["max_new_tokens"]) == (
        True, 0.95, 0.7, 1024)
    assert stage["data"][0]["dataset"] == "identity,alpaca_en_demo" and stage["batch_size"] == 1
    assert pipeline["model"] == "meta-llama/Meta-Llama-3-8B-Instruct" and pipeline["name"] == "predict"


def lf_sft(tmp_path: Path, tiny_model, out: str, **keys) -> Path:
    """A LLaMA-Factory sft recipe on an alpaca dataset registered in its dataset_info.json."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    rows = [{"instruction": f"Say {w}.", "input": "", "output": f"{w} {w}."} for w in ("yes", "no", "hi", "ok") * 2]
    (data / "demo.json").write_text(json.dumps(rows))
    (data / "dataset_info.json").write_text(json.dumps({"demo": {"file_name": "demo.json"}}))
    recipe = {"model_name_or_path": str(tiny_model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
              "lora_rank": 4, "dataset": "demo", "dataset_dir": str(data), "cutoff_len": 64,
              "output_dir": str(tmp_path / out), "max_steps": 2, "per_device_train_batch_size": 4,
              "learning_rate": 1e-2, "report_to": "none", **keys}
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def lora_b(adapter: Path) -> dict:
    return {k: v for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k}


def test_adapter_name_or_path_goes_on_training_the_adapter(tmp_path, tiny_model):
    first = run(str(lf_sft(tmp_path, tiny_model, "first")))
    adapter = first / "sft" / "model"
    # the second recipe asks for rank 8, but goes on with the given adapter, its rank 4 and its weights
    recipe = lf_sft(tmp_path, tiny_model, "second", adapter_name_or_path=str(adapter), lora_rank=8,
                    learning_rate=1e-9, max_steps=1)
    assert load_config(str(recipe)).stages[0].lora.adapter == str(adapter)
    second = run(str(recipe))
    assert read_manifest(second)["stages"]["sft"]["status"] == "done"
    before, after = lora_b(adapter), lora_b(second / "sft" / "model")
    assert before.keys() == after.keys() and all(v.shape[1] == 4 for v in after.values())
    assert max(float(v.abs().max()) for v in before.values()) > 1e-3  # trained: a fresh lora_B is all zeros
    assert all(float((after[k] - before[k]).abs().max()) < 1e-5 for k in before)


def test_do_predict_after_training_scores_the_trained_model(tmp_path, tiny_model):
    recipe = lf_sft(tmp_path, tiny_model, "predicted", do_predict=True, eval_dataset="demo", max_new_tokens=8,
                    do_sample=False, per_device_eval_batch_size=4)
    run_dir = run(str(recipe))
    stages = read_manifest(run_dir)["stages"]
    assert stages["sft"]["status"] == "done" and stages["predict"]["status"] == "done"
    figures = json.loads((run_dir / "predict" / "metrics.json").read_text())["figures"]
    assert set(figures["sft"]) == {"bleu", "rouge1", "rouge2", "rougeL"}  # LLaMA-Factory's BLEU-4 and ROUGE-1/2/L


@pytest.mark.parametrize("key, value, expected", [
    ("max_samples", "${oops}", "an integer"), ("template", [[]], "a string"), ("warmup_ratio", "0.1", "a number"),
    ("loraplus_lr_ratio", float("nan"), "a number"), ("dataset", [1, 2], "a name or a list of names"),
    ("do_predict", "yes", "true or false"), ("lora_rank", True, "an integer")])
def test_a_value_of_the_wrong_type_names_its_key(key, value, expected):
    with pytest.raises(ConfigError, match=rf"^{key}: .*; expected {expected}$"):
        to_pipeline({**extra("dft/qwen2_full_sft.yaml"), key: value})


def test_every_recipe_kind_reads_names_and_the_run_folder_alike():
    predicted = to_pipeline({**extra("nlg_eval/llama3_lora_predict.yaml"), "adapter_name_or_path": ["saves/a"],
                             "output_dir": "saves/prédiction/"})
    assert predicted["stages"][0]["models"] == ["saves/a"] and predicted["name"] == "pr_diction"
    trained = to_pipeline({**extra("dft/qwen2_full_sft.yaml"), "output_dir": "saves/prédiction/"})
    assert trained["name"] == "pr_diction"
