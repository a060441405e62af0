"""The parent side of a launch: what the workers get, and how their failures come back."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from posttrain.config import from_dict, load_config
from posttrain.errors import PosttrainError
from posttrain.launch import runner
from posttrain.stages import StageContext
from tests.conftest import make_chats, write_jsonl


@pytest.fixture
def ctx(tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    rl = write_jsonl(tmp_path / "rl.jsonl", [{"prompt": [{"role": "user", "content": "n?"}], "data_source": "x",
                                             "ground_truth": 1}])
    config = load_config({"name": "p", "model": "m", "output_dir": str(tmp_path / "run"), "launch": {"nproc": 2},
                          "stages": [{"name": "sft1", "type": "sft", "data": str(data),
                                      "trainer": {"hub_token": "hf_SECRET"}},
                                     {"name": "g", "type": "grpo", "model": "sft1", "data": {"path": str(rl)},
                                      "rewards": [{"name": "exact_match", "weight": 2}]},
                                     {"name": "ev", "type": "eval", "models": ["base", "g"], "data": str(rl),
                                      "metrics": ["reward:exact_match"]}]})
    return StageContext(config, config.stage("sft1"), "m", tmp_path / "run" / "sft1")


def fake_launch(monkeypatch, act):
    """Stand in for `accelerate launch`: `act(folder)` plays the workers and returns the exit status."""
    seen = {}

    def wait(argv, env):
        folder = Path(argv[-1])
        seen.update(argv=argv, env=env, folder=folder, mode=stat.S_IMODE(folder.stat().st_mode),
                    payload=json.loads((folder / "payload.json").read_text()))
        return act(folder)

    monkeypatch.setattr(runner, "_wait", wait)
    return seen


def test_the_workers_get_the_whole_pipeline_in_a_private_folder_removed_after(ctx, monkeypatch):
    seen = fake_launch(monkeypatch, lambda folder: (folder / "result.json").write_text('{"train_loss": 1.5}') and 0)
    assert runner.run_stage(ctx) == {"train_loss": 1.5}
    assert seen["mode"] == 0o700 and not seen["folder"].exists()  # the pipeline may hold a hub token
    payload = seen["payload"]
    assert (payload["stage"], payload["model_path"]) == ("sft1", "m")
    assert Path(payload["stage_dir"]).is_absolute()
    again = from_dict(payload["pipeline"])
    assert runner.dump(again) == runner.dump(ctx.pipeline)
    assert again.stage("g").rewards[0].weight == 2 and again.launch.nproc == 2
    assert seen["env"]["POSTTRAIN_PARENT_PID"] == str(os.getpid())
    assert (seen["folder"] / "accelerate.yaml").name in " ".join(seen["argv"])


def test_bad_input_in_a_worker_is_the_same_posttrain_error(ctx, monkeypatch):
    def fail(folder):
        (folder / "error-1.json").write_text(json.dumps({"message": "stage sft1: the training data holds no records"}))
        return 1

    fake_launch(monkeypatch, fail)
    with pytest.raises(PosttrainError, match="the training data holds no records"):
        runner.run_stage(ctx)


def test_a_crash_is_a_launch_error_and_a_silent_rank_0_too(ctx, monkeypatch):
    fake_launch(monkeypatch, lambda folder: 1)
    with pytest.raises(runner.LaunchError, match="exit status 1"):
        runner.run_stage(ctx)
    fake_launch(monkeypatch, lambda folder: 0)
    with pytest.raises(runner.LaunchError, match="without leaving its metrics"):
        runner.run_stage(ctx)
    assert runner.run_stage(ctx, collect=False) == {}  # a node whose rank 0 is elsewhere


def test_an_interrupted_wait_stops_the_launch(tmp_path):
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    started = time.time()
    runner._stop(process, grace=5)
    assert process.poll() is not None and time.time() - started < 5
