"""The export stage (posttrain/stages/export.py): an SFT LoRA stage exported in the same pipeline, skipped when
unchanged, re-exported when its input model is retrained; config and validate errors."""

from __future__ import annotations

import io
import json

import pytest
import torch
import yaml
from rich.console import Console

from posttrain.config import load_config
from posttrain.errors import ConfigError
from posttrain.pipeline import read_manifest, run
from posttrain.pipeline.validate import validate
from tests.conftest import make_chats, write_jsonl


def _config(tmp_path, tiny_model, **export_stage) -> dict:
    chats = tmp_path / "chats.jsonl"
    if not chats.exists():
        write_jsonl(chats, make_chats(24))
    return {"name": "x", "model": str(tiny_model), "output_dir": str(tmp_path / "run"), "stages": [
        {"name": "sft", "type": "sft", "data": str(chats), "finetuning": "lora",
         "trainer": {"max_steps": 2, "max_length": 128, "per_device_train_batch_size": 4, "save_steps": 2}},
        {"name": "exp", "type": "export", "model": "sft", "dtype": "bf16", **export_stage},
    ]}


def _run(config, **kwargs) -> str:
    console = Console(file=io.StringIO(), width=200)
    run(config, console=console, **kwargs)
    return console.file.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model):
    tmp_path = tmp_path_factory.mktemp("export-stage")
    config = _config(tmp_path, tiny_model)
    _run(config)
    return tmp_path, config, tmp_path / "run"


def test_the_exported_model_loads_and_the_stage_records_its_check(exported, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, run_dir = exported
    model_dir = run_dir / "exp" / "model"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert model.dtype == torch.bfloat16 and AutoTokenizer.from_pretrained(str(model_dir)).chat_template
    metrics = json.loads((run_dir / "exp" / "metrics.json").read_text())
    assert metrics["adapters"] == [str(run_dir / "sft" / "model")] and metrics["base"] == str(tiny_model)
    assert metrics["verify_max_abs_diff"] <= metrics["verify_tolerance"]
    entry = read_manifest(run_dir)["stages"]["exp"]
    assert entry["status"] == "done" and entry["output"] == str(model_dir)


def test_the_model_card_describes_the_run(exported):
    _, _, run_dir = exported
    card = (run_dir / "exp" / "model" / "README.md").read_text()
    sft = read_manifest(run_dir)["stages"]["sft"]
    assert "## Pipeline `x`" in card and "# x / sft" in card
    assert f"| sft | sft | done | `{sft['fingerprint'][:16]}` | yes |" in card
    assert "| exp |" not in card  # the stage being run is not part of what it exports
    assert f"| sft | data | `{run_dir.parent / 'chats.jsonl'}` |" in card
    assert f"| sft | train_loss | {sft['metrics']['train_loss']:.4g} |" in card


def test_a_rerun_skips_it_and_retraining_re_exports(exported):
    tmp_path, config, run_dir = exported
    before = read_manifest(run_dir)["stages"]["exp"]
    assert "↷ exp: unchanged since its last run, skipped" in _run(config)
    assert read_manifest(run_dir)["stages"]["exp"]["fingerprint"] == before["fingerprint"]
    printed = _run(config, overrides=["stages.sft.trainer.learning_rate=1e-3"])
    assert "▶ sft" in printed and "▶ exp" in printed
    after = read_manifest(run_dir)["stages"]["exp"]
    assert after["fingerprint"] != before["fingerprint"] and after["status"] == "done"


def test_an_export_stage_has_no_trainer_and_exports_no_eval_stage(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="an export stage trains nothing"):
        load_config(_config(tmp_path, tiny_model, trainer={"max_steps": 1}))
    config = _config(tmp_path, tiny_model)
    config["stages"].insert(1, {"name": "ev", "type": "eval", "data": str(tmp_path / "chats.jsonl"),
                                "metrics": ["rouge"]})
    config["stages"][2]["model"] = "ev"
    with pytest.raises(ConfigError, match="'ev' is an eval stage"):
        load_config(config)


def test_validate_checks_the_prompts_file(tiny_model, tmp_path):
    assert validate(_config(tmp_path, tiny_model)).ok
    report = validate(_config(tmp_path, tiny_model, prompts=str(tmp_path / "absent.txt")))
    assert report.problems == [f"stages.exp.prompts: {tmp_path / 'absent.txt'}: no such file"]
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path, tiny_model, dtype="int4")))
    with pytest.raises(ConfigError, match="stages.exp.dtype"):
        load_config(path)
