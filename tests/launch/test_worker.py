"""One rank, run here without a launcher: it trains the stage the payload names, hands back its metrics, reports bad
input as a message, and stops when the `posttrain run` that started it is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from posttrain.config import load_config
from posttrain.launch import runner, worker
from tests.conftest import make_chats, write_jsonl


def payload(tmp_path, tiny_model, records) -> dict:
    data = write_jsonl(tmp_path / "chats.jsonl", records)
    config = load_config({"name": "w", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
                          "stages": [{"name": "sft1", "type": "sft", "data": str(data),
                                      "trainer": {"max_steps": 2, "max_length": 64, "dataset_num_proc": None}}]})
    return {"pipeline": runner.dump(config), "stage": "sft1", "model_path": str(tiny_model),
            "stage_dir": str(tmp_path / "run" / "sft1")}


def test_a_rank_trains_the_stage_and_hands_back_its_metrics(tmp_path, tiny_model, monkeypatch):
    monkeypatch.delenv("POSTTRAIN_PARENT_PID", raising=False)
    folder = tmp_path / "launch"
    folder.mkdir()
    (folder / "payload.json").write_text(json.dumps(payload(tmp_path, tiny_model, make_chats(8))))
    assert worker.main([str(folder)]) == 0
    metrics = json.loads((folder / "result.json").read_text())
    assert metrics["processes"] == 1 and metrics["train_examples"] == 8
    assert (tmp_path / "run" / "sft1" / "model" / "model.safetensors").exists()


def test_bad_input_leaves_its_message_and_exit_status_2(tmp_path, tiny_model, monkeypatch):
    monkeypatch.delenv("POSTTRAIN_PARENT_PID", raising=False)
    monkeypatch.setenv("RANK", "1")
    folder = tmp_path / "launch"
    folder.mkdir()
    (folder / "payload.json").write_text(json.dumps(payload(tmp_path, tiny_model, [])))
    assert worker.main([str(folder)]) == worker.EXIT_USER_ERROR
    assert "holds no records" in json.loads((folder / "error-1.json").read_text())["message"]
    assert not (folder / "result.json").exists()


def test_a_worker_stops_when_its_posttrain_run_is_gone():
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    watcher = subprocess.Popen(
        [sys.executable, "-c", "import time; from posttrain.launch.worker import _watch_parent; _watch_parent(0.1); "
                               "time.sleep(60)"],
        env={**os.environ, "POSTTRAIN_PARENT_PID": str(parent.pid)}, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert watcher.poll() is None, "it must not stop while the parent lives"
        parent.kill()
        parent.wait()
        assert watcher.wait(timeout=10) == 1
        assert "is gone; stopping" in watcher.stderr.read()
    finally:
        parent.kill()
        watcher.kill()
        parent.wait()
        watcher.wait()
        watcher.stderr.close()


def test_a_worker_whose_posttrain_run_is_gone_before_it_starts_stops_too():
    from posttrain.launch.process import start_time as _start_time

    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = _start_time(parent.pid)
    parent.kill()
    parent.wait()
    watcher = subprocess.run(
        [sys.executable, "-c", "import time; from posttrain.launch.worker import _watch_parent; _watch_parent(0.1); "
                               "time.sleep(20)"],
        env={**os.environ, "POSTTRAIN_PARENT_PID": str(parent.pid), "POSTTRAIN_PARENT_START": started},
        stderr=subprocess.PIPE, text=True, timeout=15)
    assert watcher.returncode == 1 and "is gone; stopping" in watcher.stderr
