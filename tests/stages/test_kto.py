"""The KTO stage: learns from answers labelled desirable or not, on the tiny model; reads TRL's unpaired rows and
LLaMA-Factory's kto_tag datasets; its trainer block reaches KTOConfig, with the loss type checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.config import load_config
from posttrain.data.formats import load_records
from posttrain.errors import DataError, PosttrainError
from posttrain.pipeline import read_manifest, run
from posttrain.stages import kto
from tests.conftest import write_jsonl
from tests.stages.test_reward_model import pairs

ROOT = Path(__file__).resolve().parents[2]
TRAINER = {"max_steps": 12, "learning_rate": 5e-3, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
           "logging_steps": 4, "eval_strategy": "steps", "eval_steps": 6, "max_length": 128}


def unpaired(rows):
    return [{"prompt": r["prompt"], "completion": r[key], "label": key == "chosen"}
            for r in rows for key in ("chosen", "rejected")]


def config(tmp_path, base, **trainer):
    data = write_jsonl(tmp_path / "train.jsonl", unpaired(pairs(24, 0)))
    held = write_jsonl(tmp_path / "eval.jsonl", pairs(16, 1, "What do you know about"))
    held_unpaired = write_jsonl(tmp_path / "eval_unpaired.jsonl", unpaired(pairs(8, 1, "What do you know about")))
    return {"name": "k", "model": str(base), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "kto", "type": "kto", "data": {"path": str(data), "format": "unpaired_preference"},
                        "eval_data": str(held_unpaired), "trainer": {**TRAINER, **trainer}},
                       {"name": "eval", "type": "eval", "models": ["base", "kto"],
                        "data": {"path": str(held), "format": "preference"}, "metrics": ["preference_accuracy"]}]}


def test_learns_desirable_over_undesirable_and_ranks_held_out_pairs_better_than_base(tmp_path, tiny_model):
    run_dir = run(config(tmp_path, tiny_model))
    assert read_manifest(run_dir)["stages"]["kto"]["status"] == "done"
    metrics = json.loads((run_dir / "kto" / "metrics.json").read_text())
    assert metrics["desirable"] == metrics["undesirable"] == 24 and metrics["eval_examples"] == 16
    assert metrics["eval_rewards/margins"] > 0 and metrics["eval_rewards/chosen"] > metrics["eval_rewards/rejected"]
    figures = json.loads((run_dir / "eval" / "metrics.json").read_text())["figures"]
    assert figures["kto"]["preference_margin"] > figures["base"]["preference_margin"] + 0.5, figures


def test_the_trainer_block_reaches_kto_config_and_the_loss_type_is_checked(tmp_path, tiny_model):
    pipeline = load_config(config(tmp_path, tiny_model, beta=0.3, desirable_weight=1.5))
    args = kto.plan(pipeline.stage("kto"), pipeline, tmp_path / "out").args
    assert args.beta == 0.3 and args.desirable_weight == 1.5 and args.loss_type == "kto"
    pipeline = load_config(config(tmp_path, tiny_model, loss_type="kt0"))
    with pytest.raises(PosttrainError, match=r"stages\.kto\.trainer\.loss_type: unknown 'kt0'.*did you mean 'kto'"):
        kto.plan(pipeline.stage("kto"), pipeline, tmp_path / "out")


def test_llamafactory_kto_tag_datasets_become_labelled_answers():
    from posttrain.config.schema import DataSpec
    from posttrain.data.sources import resolve_sources

    [source] = resolve_sources([DataSpec(dataset="clinical_kto_sharegpt", dataset_dir=str(ROOT / "examples/data/preference"))])
    records = [record for _, record in load_records(source.path, source.format, columns=source.columns,
                                                    tags=source.tags, record="unpaired_preference")]
    assert source.format == "unpaired_preference" and len(records) == 32
    assert [r["label"] for r in records[:4]] == [True, False, True, False]
    assert records[0]["prompt"][-1]["role"] == "user" and records[0]["completion"][0]["role"] == "assistant"


def test_a_label_that_is_not_a_boolean_names_its_file_line_and_column(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Hi", "completion": "Hello.", "label": True},
                                                {"prompt": "Hi", "completion": "Go away.", "label": "bad"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2.*label.*expected true \(desirable\) or false"):
        list(load_records(path, "kto"))
