"""posttrain/runs/secrets.py: no secret from a config or the environment lands in a run directory, binary
files (training_args.bin in every model and checkpoint) included, and resume still works."""

from __future__ import annotations

import copy
import io
import json
import pickle
from pathlib import Path

import pytest
import torch
from rich.console import Console

from posttrain.config import load_config
from posttrain.pipeline import read_manifest, run
from posttrain.runs.secrets import pickled_without_secrets
from posttrain.training.finish import _state
from tests.conftest import make_chats, write_jsonl
from tests.stages.test_reward_model import pairs

CONFIG_TOKEN = "hf_CONFIGsecret0123456789"
ENV_SECRETS = {"HF_TOKEN": "hf_ENVsecret0123456789", "WANDB_API_KEY": "wandbENVsecret0123456789",
               "NCBI_API_KEY": "ncbiENVsecret0123456789"}
TRAINER = {"max_length": 64, "per_device_train_batch_size": 2, "logging_steps": 1, "save_steps": 1,
           "save_total_limit": 3, "dataset_num_proc": None, "hub_token": CONFIG_TOKEN}


def _pipeline(tmp_path, tiny_model) -> dict:
    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(12, seed=1))
    preferences = write_jsonl(tmp_path / "pairs.jsonl", pairs(8, 0))
    return {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"), "stages": [
        {"name": "sft1", "type": "sft", "data": str(chats), "trainer": {**TRAINER, "max_steps": 3}},
        {"name": "sft2", "type": "sft", "model": "sft1", "data": str(chats), "finetuning": "lora",
         "lora": {"r": 4}, "trainer": {**TRAINER, "max_steps": 2}},
        {"name": "rm", "type": "reward_model", "data": {"path": str(preferences), "format": "preference"},
         "trainer": {**TRAINER, "max_steps": 2, "max_length": 128}},
    ]}


def _files_holding_a_secret(run_dir: Path) -> list[str]:
    secrets = [CONFIG_TOKEN, *ENV_SECRETS.values()]
    found = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(run_dir)}: {s}" for s in secrets if s.encode() in data]
    return found


def test_no_planted_secret_is_anywhere_in_the_run_directory_and_resume_still_works(tmp_path, tiny_model,
                                                                                  monkeypatch):
    for key, value in ENV_SECRETS.items():
        monkeypatch.setenv(key, value)
    config = _pipeline(tmp_path, tiny_model)
    run_dir = run(config)
    saved = sorted(run_dir.rglob("training_args.bin"))
    assert len(saved) >= 6, saved  # each stage's model and checkpoints: what the grep below must cover
    assert _files_holding_a_secret(run_dir) == []
    args = torch.load(saved[0], weights_only=False)
    assert args.hub_token is None and args.max_steps in (2, 3)  # the rest of the arguments are kept

    # as if killed after checkpoint 2 of sft1: the same command resumes from it and finishes the chain
    for path in (run_dir / "sft1" / "model", run_dir / "sft1" / "checkpoints" / "checkpoint-3"):
        import shutil

        shutil.rmtree(path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"]["sft1"]["status"] = "running"
    manifest["stages"]["sft1"]["pid"] = 0
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    console = io.StringIO()
    run(config, console=Console(file=console, width=200))
    assert "sft1: resuming an unfinished run" in console.getvalue()
    state = _state(run_dir / "sft1" / "checkpoints" / "checkpoint-3")
    assert state["global_step"] == 3
    steps = [json.loads(line)["current_steps"] for line in (run_dir / "sft1" / "trainer_log.jsonl").open()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3], "resumed at step 3, not started over"
    assert all(entry["status"] == "done" for entry in read_manifest(run_dir)["stages"].values())
    assert _files_holding_a_secret(run_dir) == []


@pytest.mark.parametrize("kind", ["sft", "grpo", "reward_model", "process_reward"])
def test_every_trainer_stage_pickles_its_arguments_without_the_token(tmp_path, kind):
    import importlib

    stage = {"name": "s", "type": kind, "data": "d.jsonl", "trainer": {"hub_token": CONFIG_TOKEN}}
    if kind == "grpo":
        stage.update(rewards=["answer_tags"], trainer={**stage["trainer"], "num_generations": 2,
                                                       "per_device_train_batch_size": 2})
    config = load_config({"name": "p", "model": "models/base", "stages": [stage]})
    planned = importlib.import_module(f"posttrain.stages.{kind}").plan(config.stages[0], config, tmp_path)
    args = planned[0] if isinstance(planned, tuple) else planned.args
    assert args.hub_token == CONFIG_TOKEN  # the running trainer keeps it: push_to_hub needs it
    buffer = io.BytesIO()
    torch.save(args, buffer)
    assert CONFIG_TOKEN.encode() not in buffer.getvalue()
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert type(loaded) is type(args).__mro__[1] and loaded.hub_token is None
    assert loaded.learning_rate == args.learning_rate


def test_copies_keep_the_secret_and_every_pickle_protocol_leaves_it_out():
    from transformers import TrainingArguments

    args = pickled_without_secrets(TrainingArguments(output_dir="/tmp/unused", hub_token=CONFIG_TOKEN,
                                                     use_cpu=True))
    assert pickled_without_secrets(args) is args
    assert copy.copy(args).hub_token == CONFIG_TOKEN and copy.deepcopy(args).hub_token == CONFIG_TOKEN
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(args, protocol=protocol)
        assert CONFIG_TOKEN.encode() not in data
        assert type(pickle.loads(data)) is TrainingArguments
