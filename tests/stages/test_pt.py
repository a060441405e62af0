"""Continued pretraining (`type: pt`): raw text packed into blocks lowers the held-out loss; and the stage table
alone makes validation, the launcher, the GPU checks, the data doctor and the fingerprint know the stage."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from posttrain import stages
from posttrain.cli import app
from posttrain.config import load_config
from posttrain.errors import ConfigError, PosttrainError
from posttrain.launch import launched, with_launch
from posttrain.pipeline import read_manifest, run, stage_fingerprint
from posttrain.stages.pt import blocks
from posttrain.pipeline.validate import validate

DRUGS = ["aspirin", "metformin", "insulin", "statins", "placebo", "warfarin"]
CONDITIONS = ["asthma", "diabetes", "migraine", "stroke", "anaemia", "gout"]


def corpus(path, n: int, seed: int):
    """Abstract-like sentences in one fixed shape: learnable text whose held-out part shares its form."""
    rng = random.Random(seed)
    lines = [f"In a randomized trial of {rng.randint(40, 900)} adults with {rng.choice(CONDITIONS)}, "
             f"{rng.choice(DRUGS)} improved the primary outcome." for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def config(tmp_path, tiny_model, **stage):
    text = corpus(tmp_path / "corpus.txt", 160, 0)
    return {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "pt", "type": "pt", "data": {"path": str(text)}, "val_size": 0.2,
                        "block_size": 32,
                        "trainer": {"max_steps": 30, "learning_rate": 3e-3, "per_device_train_batch_size": 8,
                                    "per_device_eval_batch_size": 8, "logging_steps": 10}, **stage}]}


def test_pretraining_lowers_the_loss_on_held_out_text(tmp_path, tiny_model):
    run_dir = run(config(tmp_path, tiny_model))
    entry = read_manifest(run_dir)["stages"]["pt"]
    assert entry["status"] == "done"
    metrics = json.loads((run_dir / "pt" / "metrics.json").read_text())
    assert metrics["train_documents"] == 128 and metrics["eval_documents"] == 32 and metrics["block_size"] == 32
    assert metrics["eval_loss"] < metrics["base_eval_loss"] - 1.0, metrics  # the input model on the same text
    assert (run_dir / "pt" / "model" / "config.json").is_file()


def test_blocks_pack_documents_ended_by_eos_into_equal_rows(tiny_model):
    from posttrain.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model))
    documents = ["one two three", "four five"]
    stream = [t for d in documents for t in tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    dataset = blocks(tokenizer, documents, 4, "t")
    assert dataset["input_ids"] == [stream[i:i + 4] for i in range(0, len(stream) // 4 * 4, 4)]
    assert dataset["labels"] == dataset["input_ids"]
    with pytest.raises(PosttrainError, match="fewer than one block of block_size 1000"):
        blocks(tokenizer, documents, 1000, "t")


def test_the_stage_table_makes_every_layer_know_the_stage(tmp_path, tiny_model):
    raw = config(tmp_path, tiny_model)
    loaded = load_config(raw)
    stage = loaded.stages[0]
    assert isinstance(stage, stages.config_class("pt")) and stages.trains("pt")
    # launched on several processes like every training stage
    assert not launched(stage, loaded) and launched(stage, with_launch(loaded, {"nproc": 2}))
    # the GPU checks: a GPU-only option is refused on this CPU machine with its fix
    liger = load_config({**raw, "stages": [{**raw["stages"][0], "trainer": {"use_liger_kernel": True}}]})
    assert any("use_liger_kernel" in p for p in stages.problems(liger.stages[0], liger))
    # the fingerprint covers the data's content
    before = stage_fingerprint(stage, loaded, "m")
    corpus(tmp_path / "corpus.txt", 160, 1)
    assert stage_fingerprint(stage, loaded, "m") != before
    # validation checks the text records and builds TrainingArguments; an unknown key names its stage
    assert validate(raw).ok
    with pytest.raises(ConfigError, match="stages.pt: unknown key 'block_sizes'; did you mean 'block_size'"):
        load_config({**raw, "stages": [{**raw["stages"][0], "block_sizes": 8}]})


def test_the_data_doctor_checks_what_a_pt_stage_reads(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a document"}\n{"text": ""}\n')
    result = CliRunner().invoke(app, ["data", "check", str(path), "--stage", "pt"])
    assert result.exit_code == 2
    assert f"{path}:2: error: text: empty; expected some text" in result.stdout
