"""posttrain/export/card.py: the model card's front matter and facts, and what it says of the run a model came
from (stages, data, metrics, evaluation), written from a run directory made by hand: no model runs."""

from __future__ import annotations

import json

import yaml

from posttrain.data.sources import Source, content_fingerprint
from posttrain.export import Lineage
from posttrain.export.card import lineage_stages, model_card

SUMMARY = {"dtype": "bf16", "exported": "2025-01-02T03:04:05+00:00", "verify": None}
CHECK = {"max_abs_diff": 0.05, "tolerance": 0.8, "scale": 3.2, "dtype": "bf16", "prompts": 3, "positions": 150,
         "top1_agreement": 1.0, "adapter_effect": 2.0, "passed": True}


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def _adapter(path, r=4, alpha=8):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": alpha, "task_type": "CAUSAL_LM"}))
    return path


def test_the_facts_of_an_export(tmp_path):
    adapter = _adapter(tmp_path / "lora")
    card = model_card({**SUMMARY, "verify": CHECK}, Lineage(str(tmp_path / "base"), [str(adapter)]))
    meta = _front_matter(card)
    assert meta["library_name"] == "transformers" and meta["tags"] == ["posttrain", "lora", "merged"]
    assert "base_model" not in meta  # a local directory is no hub id, and the Hub rejects metadata naming one
    for fact in (f"| base model | `{tmp_path / 'base'}` |", f"| adapter merged | `{adapter}` (LoRA r 4, alpha 8) |",
                 "| dtype | bf16 |", "| exported | 2025-01-02T03:04:05+00:00 |", "transformers ", "peft ", "torch ",
                 "| verified | largest logit difference 0.05 against the unmerged reference (tolerance 0.8 = 0.25 x the "
                 "largest logit, 3 prompts, 150 positions) |", "`vllm serve <this directory>`"):
        assert fact in card, fact
    assert "## Pipeline" not in card


def test_a_hub_base_is_named_in_the_front_matter_and_an_unverified_export_says_so():
    card = model_card(SUMMARY, Lineage("Qwen/Qwen2.5-0.5B-Instruct"))
    assert _front_matter(card)["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert _front_matter(card)["tags"] == ["posttrain"]
    assert "| verified | no (" in card


def _run(tmp_path):
    """base -> sft (LoRA) -> ev (eval) -> exp (export), as the pipeline leaves it."""
    run = tmp_path / "run"
    data = tmp_path / "chats.jsonl"
    data.write_text('{"messages": []}\n')
    adapter = _adapter(run / "sft" / "model")
    (run / "sft" / "config.yaml").write_text(yaml.safe_dump({"stage": {
        "name": "sft", "type": "sft", "data": [{"path": str(data), "format": "openai"}],
        "eval_data": [{"path": str(tmp_path / "gone.jsonl")}]}}))
    (run / "ev").mkdir()
    (run / "ev" / "metrics.json").write_text(json.dumps({"figures": {"base": {"rougeL": 0.1},
                                                                     "sft": {"rougeL": 0.5}}}))
    (run / "manifest.json").write_text(json.dumps({"name": "demo", "created": "2025-01-01T00:00:00+00:00",
                                                   "git_commit": "abc123", "stage_order": ["sft", "ev", "exp"],
                                                   "stages": {
        "sft": {"type": "sft", "status": "done", "fingerprint": "1" * 64, "input_model": str(tmp_path / "base"),
                "metrics": {"train_loss": 1.23456, "train_examples": 40}},
        "ev": {"type": "eval", "status": "done", "fingerprint": "2" * 64, "input_model": str(tmp_path / "base")},
        "exp": {"type": "export", "status": "running", "fingerprint": "3" * 64, "input_model": str(adapter)}}}))
    return run, adapter, data


def test_a_model_from_a_run_names_its_pipeline_stages_data_metrics_and_evaluation(tmp_path):
    run, adapter, data = _run(tmp_path)
    card = model_card(SUMMARY, Lineage(str(tmp_path / "base"), [str(adapter)]), exclude_stage="exp")
    assert "# demo / sft" in card and "## Pipeline `demo`" in card and "git commit `abc123`" in card
    assert "| sft | sft | done | `1111111111111111` | yes |" in card
    assert "| ev | eval | done | `2222222222222222` |  |" in card
    assert "| exp |" not in card  # the export stage writing this card is not part of the model
    digest = content_fingerprint([Source(str(data), "openai")])[:16]
    assert f"| sft | data | `{data}` | openai | `{digest}` |" in card
    assert f"| sft | eval_data | `{tmp_path / 'gone.jsonl'}` | detected | not found at export |" in card
    assert "| sft | train_loss | 1.235 |" in card and "| sft | train_examples | 40 |" in card
    assert "### Evaluation `ev`\n\n| model | rougeL |\n| --- | ---: |\n| base | 0.1 |\n| sft | 0.5 |" in card


def test_the_stages_a_model_is_made_of_follow_input_models_within_the_run(tmp_path):
    run = tmp_path / "run"
    stages = {"a": {"input_model": "models/base"}, "b": {"input_model": str(run / "a" / "model")},
              "c": {"input_model": str(run / "b" / "model")}, "other": {"input_model": "models/base"}}
    assert lineage_stages(run, "c", stages) == ["c", "b", "a"]
    assert lineage_stages(run, "other", stages) == ["other"]
