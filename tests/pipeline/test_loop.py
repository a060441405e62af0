"""The pipeline runner: stage chaining, manifest, skip when unchanged, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from posttrain.errors import PosttrainError
from posttrain.pipeline import read_manifest, run, stage_states
from tests.conftest import make_chats, wait_for, write_jsonl

TRAINER = {"max_length": 128, "per_device_train_batch_size": 2, "learning_rate": 3e-3, "logging_steps": 1,
           "report_to": "none", "dataset_num_proc": None}


def pipeline(tmp_path, tiny_model, steps=(4, 3)) -> dict:
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(40, seed=1))
    return {
        "name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
        "stages": [
            {"name": "sft1", "type": "sft", "data": str(data), "trainer": {**TRAINER, "max_steps": steps[0]}},
            {"name": "sft2", "type": "sft", "model": "sft1", "data": {"path": str(data), "format": "openai"},
             "finetuning": "lora", "lora": {"r": 4}, "trainer": {**TRAINER, "max_steps": steps[1]}},
        ],
    }


def test_stages_chain_and_rerun_skips(tmp_path, tiny_model):
    config = pipeline(tmp_path, tiny_model)
    run_dir = run(config)
    manifest = read_manifest(run_dir)
    assert [manifest["stages"][s]["status"] for s in ("sft1", "sft2")] == ["done", "done"]
    assert manifest["stages"]["sft2"]["input_model"] == str(run_dir / "sft1" / "model")
    assert manifest["versions"]["transformers"] and manifest["torch_threads"] >= 1
    assert (run_dir / "sft2" / "model" / "adapter_config.json").exists()
    assert yaml.safe_load((run_dir / "sft1" / "config.yaml").read_text())["stage"]["name"] == "sft1"
    lines = [json.loads(line) for line in (run_dir / "sft1" / "trainer_log.jsonl").read_text().splitlines()]
    keys = {"current_steps", "total_steps", "loss", "lr", "epoch", "percentage", "elapsed_time", "remaining_time"}
    assert keys <= set(lines[0])
    assert [line["current_steps"] for line in lines if "loss" in line] == [1, 2, 3, 4]

    weights = run_dir / "sft1" / "model" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    started = time.time()
    run(config)
    assert time.time() - started < 10
    assert weights.stat().st_mtime_ns == mtime

    # a change to sft2 only reruns sft2; a change to sft1 reruns both (sft2's input changed)
    run(config, ["stages.sft2.trainer.learning_rate=1e-3"])
    assert weights.stat().st_mtime_ns == mtime
    run(config, ["stages.sft1.trainer.learning_rate=1e-3"])
    assert weights.stat().st_mtime_ns != mtime
    fingerprints = {s: read_manifest(run_dir)["stages"][s]["fingerprint"] for s in ("sft1", "sft2")}
    assert len(set(fingerprints.values())) == 2


def test_data_change_reruns_the_stage(tmp_path, tiny_model):
    config = pipeline(tmp_path, tiny_model, steps=(2, 2))
    run(config, only="sft1")
    before = read_manifest(tmp_path / "run")["stages"]["sft1"]["fingerprint"]
    write_jsonl(tmp_path / "chats.jsonl", make_chats(40, seed=2))
    run(config, only="sft1")
    assert read_manifest(tmp_path / "run")["stages"]["sft1"]["fingerprint"] != before


def test_only_a_later_stage_needs_its_input_finished(tmp_path, tiny_model):
    with pytest.raises(PosttrainError, match="sft1 has not finished"):
        run(pipeline(tmp_path, tiny_model), only="sft2")


def _start(config_path: Path) -> subprocess.Popen:
    # with Ctrl-C's handler, as in a terminal, even where pytest runs with SIGINT ignored (a background job)
    interruptible = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); " \
                    "from posttrain.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", interruptible, "run", str(config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("kill_point,sent", [("startup", signal.SIGKILL), ("after_checkpoint", signal.SIGKILL),
                                             ("after_checkpoint", signal.SIGINT)],
                         ids=["kill-at-startup", "kill-after-checkpoint", "ctrl-c-after-checkpoint"])
def test_a_kill_or_ctrl_c_then_same_command_finishes(tmp_path, tiny_model, kill_point, sent):
    config = pipeline(tmp_path, tiny_model, steps=(40, 2))
    config["stages"][0]["trainer"]["save_steps"] = 5
    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "sft1" / "checkpoints"

    process = _start(config_path)
    if kill_point == "startup":
        wait_for(lambda: (run_dir / "manifest.json").exists(), process)
    else:
        wait_for(lambda: (checkpoints / "checkpoint-10").exists(), process)
    process.send_signal(sent)
    process.wait()
    if sent == signal.SIGINT:  # a Ctrl-C is recorded as what it is, not as a failure
        assert process.returncode == 130
        assert "error" not in stage_states(run_dir)[0] and stage_states(run_dir)[0]["status"] == "interrupted"
    assert [row["status"] for row in stage_states(run_dir)][0] in ("interrupted", "pending")

    rerun = _start(config_path)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    if kill_point == "after_checkpoint":
        assert "resuming" in output
    assert [row["status"] for row in stage_states(run_dir)] == ["done", "done"]
    steps = [json.loads(line)["current_steps"] for line in (run_dir / "sft1" / "trainer_log.jsonl").open()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, 41)), "each step logged once, in order, across the kill"
    assert (run_dir / "sft2" / "model" / "adapter_model.safetensors").exists()


def test_secrets_in_a_config_are_not_written_out(tmp_path, tiny_model):
    config = pipeline(tmp_path, tiny_model, steps=(1, 1))
    config["stages"][0]["trainer"]["hub_token"] = "hf_SECRET123"
    run_dir = run(config, only="sft1")
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".jsonl"):
            assert "hf_SECRET123" not in path.read_text(), path


def test_resume_from_the_final_checkpoint_does_not_train_past_max_steps(tmp_path, tiny_model):
    import shutil

    config = pipeline(tmp_path, tiny_model, steps=(4, 1))
    config["stages"][0]["trainer"]["save_steps"] = 2
    run_dir = run(config, only="sft1")
    shutil.rmtree(run_dir / "sft1" / "model")  # as if killed after the last checkpoint, before the model was saved
    run(config, only="sft1")
    steps = [json.loads(line)["current_steps"] for line in (run_dir / "sft1" / "trainer_log.jsonl").open()]
    assert max(steps) == 4
    assert not (run_dir / "sft1" / "checkpoints" / "checkpoint-5").exists()
    assert (run_dir / "sft1" / "model" / "model.safetensors").exists()


def test_logging_and_saving_keys_do_not_rerun_a_stage(tmp_path, tiny_model):
    config = pipeline(tmp_path, tiny_model, steps=(2, 1))
    run(config, only="sft1")
    weights = tmp_path / "run" / "sft1" / "model" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    run(config, ["stages.sft1.trainer.logging_steps=5", "stages.sft1.trainer.save_steps=7"], only="sft1")
    assert weights.stat().st_mtime_ns == mtime


def test_a_missing_explicit_checkpoint_is_a_clear_error(tmp_path, tiny_model):
    config = pipeline(tmp_path, tiny_model, steps=(2, 1))
    with pytest.raises(PosttrainError, match="resume_from_checkpoint: .*nope: not a checkpoint directory"):
        run(config, [f"stages.sft1.trainer.resume_from_checkpoint={tmp_path / 'nope'}"], only="sft1")


def test_retraining_a_stage_reruns_the_stages_after_it(tmp_path, tiny_model):
    config = pipeline(tmp_path, tiny_model, steps=(2, 1))
    run_dir = run(config)
    adapter = run_dir / "sft2" / "model" / "adapter_model.safetensors"
    mtime = adapter.stat().st_mtime_ns
    run(config, only="sft1", force=True)
    run(config)
    assert adapter.stat().st_mtime_ns != mtime


@pytest.mark.parametrize("key, secret", [
    ("hub_token", True), ("token", True), ("HF_TOKEN", True), ("api_key", True), ("openai_apikey", True),
    ("wandb_secret", True), ("password", True), ("aws_access_key", True),
    ("max_new_tokens", False), ("max_tokens", False), ("num_tokens", False), ("max_prompt_tokens", False),
    ("pad_token", False), ("eos_token", False), ("tokenizer", False), ("secretary", False),
    ("hubToken", True), ("accessToken", True), ("auth-token", True), ("apiKey", True),
    ("eos_token_id", False), ("pad_token_id", False), ("decoder_start_token_id", False), ("maxNewTokens", False),
])
def test_keys_that_name_secrets_are_redacted_and_token_counts_are_not(key, secret):
    from posttrain.runs.secrets import redact

    assert redact({"stage": {key: "value-1"}}) == {"stage": {key: "<redacted>" if secret else "value-1"}}


def test_killed_before_its_config_was_in_place_the_stage_dir_is_still_its_own(tmp_path, tiny_model):
    """A SIGKILL between making the stage directory and renaming config.yaml into place leaves only atomic_path's
    temporary file; the same command then starts the stage there, while a directory with anything else is refused."""
    config = pipeline(tmp_path, tiny_model, steps=(1, 1))
    stage_dir = tmp_path / "run" / "sft1"
    stage_dir.mkdir(parents=True)
    (stage_dir / ".config.yaml.k3j_x9.tmp").write_text("half")
    run_dir = run(config)
    assert [row["status"] for row in stage_states(run_dir)] == ["done", "done"]
    assert not list(stage_dir.glob(".config.yaml.*.tmp"))
    other = tmp_path / "other"
    config = pipeline(other, tiny_model, steps=(1, 1))
    (other / "run" / "sft1").mkdir(parents=True)
    for name in (".config.yaml.k3j_x9.tmp", "notes.txt"):
        (other / "run" / "sft1" / name).write_text("mine")
    with pytest.raises(PosttrainError, match="already exists and is not stage sft1's"):
        run(config)
    assert (other / "run" / "sft1" / ".config.yaml.k3j_x9.tmp").exists()
