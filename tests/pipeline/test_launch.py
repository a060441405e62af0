"""Training stages on two gloo processes: models that load, one writer, skip and resume as with one process.

Each launch starts `accelerate launch` and two workers that import torch, transformers and TRL, about 10-15 s
on two cores, so the tests here launch three times in all and keep each stage to a few steps of the tiny model.
"""

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
from typer.testing import CliRunner

from posttrain.errors import PosttrainError
from posttrain.pipeline import read_manifest, run, stage_states
from tests.conftest import make_chats, wait_for, write_jsonl

PER_DEVICE = 2
CHATS = 16  # packing off: one row a chat, so 16 / (2 per device x 2 processes) = 4 optimizer steps
TOPICS = ["blood pressure", "fever", "asthma", "insulin", "migraine", "vaccines", "placebo", "dropout"]


def preference_pairs(n: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]}."}],
             "chosen": f"Sure, here is what {TOPICS[i % len(TOPICS)]} means, in full.",
             "rejected": ["No.", "Go away."][i % 2]} for i in range(n)]


def trainer(**extra) -> dict:
    return {"max_length": 128, "per_device_train_batch_size": PER_DEVICE, "learning_rate": 3e-3, "logging_steps": 1,
            "packing": False, "dataset_num_proc": None, **extra}


def logged_steps(stage_dir: Path) -> list[int]:
    return [line["current_steps"] for line in map(json.loads, (stage_dir / "trainer_log.jsonl").open())
            if "loss" in line]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_model):
    tmp = tmp_path_factory.mktemp("launch")
    chats = write_jsonl(tmp / "chats.jsonl", make_chats(CHATS, seed=3))
    config = {"name": "launched", "model": str(tiny_model), "output_dir": str(tmp / "run"),
              "stages": [{"name": "sft1", "type": "sft", "data": str(chats), "trainer": trainer(num_train_epochs=1)}]}
    started = time.time()
    run_dir = run(config, launch={"nproc": 2})
    return config, run_dir, time.time() - started


def test_sft_on_two_processes_saves_a_loadable_model_and_one_manifest_entry(sft_run):
    from transformers import AutoModelForCausalLM

    _, run_dir, _ = sft_run
    AutoModelForCausalLM.from_pretrained(run_dir / "sft1" / "model")
    stages = read_manifest(run_dir)["stages"]
    assert list(stages) == ["sft1"]
    assert stages["sft1"]["status"] == "done" and stages["sft1"]["launch"]["processes"] == 2
    assert stages["sft1"]["metrics"]["processes"] == 2, "the Trainer's own world size, reported by rank 0"


def test_rank_0_alone_writes_and_the_steps_halve(sft_run):
    _, run_dir, _ = sft_run
    # one process would take 16 / 2 = 8 steps over the same data and per-device batch
    assert logged_steps(run_dir / "sft1") == [1, 2, 3, 4], "each step logged once: rank 1 writes no line"
    assert not list(run_dir.rglob("*.tmp"))
    assert sorted(p.name for p in (run_dir / "sft1").iterdir()) == [
        "checkpoints", "config.yaml", "metrics.json", "model", "trainer_log.jsonl"]


def test_a_rerun_skips_the_stage_without_launching(sft_run):
    config, run_dir, first = sft_run
    weights = run_dir / "sft1" / "model" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    started = time.time()
    run(config, launch={"nproc": 2})
    assert time.time() - started < min(10, first / 2)
    run(config)  # the number of processes is no part of a stage's fingerprint
    assert weights.stat().st_mtime_ns == mtime


def _workers_of(pid: int) -> list[int]:
    """Processes started for the `posttrain run` with this pid: their environment names it."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"POSTTRAIN_PARENT_PID={pid}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_cli_reward_model_killed_mid_stage_stops_its_workers_and_resumes(tmp_path, tiny_model):
    from transformers import AutoModelForSequenceClassification

    train = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(24))
    held = write_jsonl(tmp_path / "held.jsonl", preference_pairs(8))
    config = {"name": "killed", "model": str(tiny_model), "output_dir": str(tmp_path / "run"), "launch": {"nproc": 2},
              "stages": [{"name": "rm", "type": "reward_model", "data": {"path": str(train), "format": "preference"},
                          "eval_data": {"path": str(held), "format": "preference"},
                          "trainer": {"per_device_train_batch_size": PER_DEVICE, "per_device_eval_batch_size": 4,
                                      "max_steps": 6, "save_steps": 2, "learning_rate": 3e-3, "logging_steps": 1}}]}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "posttrain.cli", "run", str(path)]  # --nproc from the file's launch: block
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"

    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for(lambda: (run_dir / "rm" / "checkpoints" / "checkpoint-2").exists(), first, timeout=180)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        deadline = time.time() + 30
        while _workers_of(first.pid) and time.time() < deadline:
            time.sleep(0.2)
        left = _workers_of(first.pid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, "the launcher and workers outlived the killed `posttrain run`"
    finally:
        first.kill()
        first.stdout.close()
    assert stage_states(run_dir)[0]["status"] == "interrupted"

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    said = " ".join(rerun.stderr.split())  # rich wraps long lines
    assert "rm: resuming an unfinished run" in said and "2 processes" in said
    assert logged_steps(run_dir / "rm") == list(range(1, 7)), "each step once, in order, across the kill"
    entry = read_manifest(run_dir)["stages"]["rm"]
    assert entry["status"] == "done" and entry["metrics"]["processes"] == 2
    assert 0 <= entry["metrics"]["eval_accuracy"] <= 1  # evaluated over both ranks
    assert AutoModelForSequenceClassification.from_pretrained(run_dir / "rm" / "model").config.num_labels == 1


def test_cli_launch_flags_reach_the_pipeline_run(tmp_path, monkeypatch):
    from posttrain import pipeline
    from posttrain.cli import app

    seen = {}
    monkeypatch.setattr(pipeline, "run", lambda *args, **kwargs: seen.update(kwargs))
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nmodel: m\nlaunch: {nproc: 8, master_port: 29999}\nstages: []\n")
    result = CliRunner().invoke(app, ["run", str(path), "--nproc", "2", "--nnodes", "2", "--node-rank", "1",
                                      "--master-addr", "10.0.0.1"])
    assert result.exit_code == 0, result.output
    assert seen["launch"] == {"nproc": 2, "nnodes": 2, "node_rank": 1, "master_addr": "10.0.0.1", "master_port": None}
    result = CliRunner().invoke(app, ["train", str(path), "--nproc", "3"])
    assert result.exit_code == 0 and seen["launch"]["nproc"] == 3


def test_bad_launch_flags_exit_2_before_anything_is_written(tmp_path, tiny_model):
    from posttrain.cli import app

    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
                                    "stages": [{"name": "s", "type": "sft", "data": str(chats)}]}))
    result = CliRunner().invoke(app, ["run", str(path), "--nnodes", "2", "--node-rank", "2"])
    assert result.exit_code == 2 and "node_rank 2 is not below nnodes 2" in result.output
    result = CliRunner().invoke(app, ["run", str(path), "--nproc", "0"])
    assert result.exit_code == 2 and "nproc" in result.output
    assert not (tmp_path / "run").exists()


def test_a_trainer_config_the_libraries_refuse_stops_before_any_worker_starts(tmp_path, tiny_model, monkeypatch):
    from posttrain.launch import runner

    def no_launch(*args, **kwargs):
        raise AssertionError("the launch started")

    monkeypatch.setattr(runner, "_wait", no_launch)
    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    config = {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
              "stages": [{"name": "s", "type": "sft", "data": str(chats), "trainer": trainer(save_strategy="often")}]}
    with pytest.raises(PosttrainError, match=r"^stages\.s\.trainer: often is not a valid SaveStrategy"):
        run(config, launch={"nproc": 2})
    config["stages"][0]["trainer"] = trainer(ddp_backend="nccl")
    with pytest.raises(PosttrainError, match=r"^stages\.s\.trainer\.ddp_backend: nccl needs CUDA GPUs"):
        run(config, launch={"nproc": 2})
