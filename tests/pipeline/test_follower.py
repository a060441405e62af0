"""A node other than node 0: it starts its share of exactly the stages node 0 starts, and writes nothing."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from posttrain.config import load_config
from posttrain.data.io import write_json
from posttrain.errors import PosttrainError
from posttrain.launch import runner
from posttrain.pipeline import follower
from posttrain.pipeline import input_model, run, stage_fingerprint
from posttrain.pipeline.plan import output_fingerprint as _output_fingerprint
from tests.conftest import make_chats, write_jsonl


def config(tmp_path, node_rank=1):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    return load_config({"name": "f", "model": "models/none", "output_dir": str(tmp_path / "run"),
                        "launch": {"nproc": 2, "nnodes": 2, "node_rank": node_rank, "master_addr": "10.0.0.1"},
                        "stages": [{"name": "a", "type": "sft", "data": str(data)},
                                   {"name": "b", "type": "sft", "model": "a", "data": str(data)},
                                   {"name": "ev", "type": "eval", "models": ["a", "b"], "data": str(data),
                                    "metrics": ["rouge"]}]})


class Leader:
    """Node 0's manifest: `a` finished in an earlier run, `b` marked done as its workers finish."""

    def __init__(self, config, ends="done"):
        self.config, self.ends = config, ends
        self.path = Path(config.output_dir) / "manifest.json"
        a = config.stage("a")
        self.a = {"status": "done", "fingerprint": stage_fingerprint(a, config, input_model(a, config, {})[1]),
                  "run_id": uuid.uuid4().hex}
        (Path(config.output_dir) / "a" / "model").mkdir(parents=True)
        write_json(self.path, {"stages": {"a": self.a, "b": {"status": "failed", "fingerprint": "x", "run_id": "old"}}})

    def start(self, name):
        """Node 0 starts stage `name` (after `a`) and records it running."""
        self.run_id = uuid.uuid4().hex
        entry = {"status": "running", "fingerprint": self.fingerprint(name), "run_id": self.run_id}
        write_json(self.path, {"stages": {"a": self.a, name: entry}})

    def finish(self, name, fingerprint):
        entry = {"status": self.ends, "fingerprint": fingerprint,
                 "run_id": getattr(self, "run_id", uuid.uuid4().hex), "error": "boom"}
        write_json(self.path, {"stages": {"a": self.a, name: entry}})

    def fingerprint(self, name):
        return stage_fingerprint(self.config.stage(name), self.config, follower_outputs_fp(self.config, self))


def test_it_runs_what_node_0_runs_and_writes_nothing(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    leader = Leader(cfg)
    calls = []

    def fake_run_stage(ctx, collect=True):
        calls.append((ctx.stage.name, ctx.model_path, collect))
        fp = stage_fingerprint(ctx.stage, cfg, follower_outputs_fp(cfg, leader))
        threading.Timer(0.3, leader.finish, (ctx.stage.name, fp)).start()  # node 0 records it a little later
        return {}

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    leader.start("b")
    assert run(cfg) == tmp_path / "run"
    assert calls == [("b", str(tmp_path / "run" / "a" / "model"), False)], "a is done, ev runs on node 0 alone"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_training_stage_is_launched_only_once_node_0_has_started_it(tmp_path, monkeypatch):
    """Node 0 may spend hours on an eval or export stage alone first; a launch started early would time out."""
    cfg = config(tmp_path)
    leader = Leader(cfg)
    started = []

    def fake_run_stage(ctx, collect=True):
        started.append(time.monotonic())
        leader.finish(ctx.stage.name, leader.fingerprint(ctx.stage.name))
        return {}

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    node_0_starts = time.monotonic() + 0.5
    threading.Timer(0.5, leader.start, ("b",)).start()  # still busy with something else until then
    follower.follow(cfg, {"a", "b", "ev"}, False, Console(quiet=True), poll=0.05)
    assert len(started) == 1 and started[0] >= node_0_starts - 0.05


def test_an_entry_that_had_ended_before_this_node_started_is_an_earlier_attempts(tmp_path, monkeypatch):
    """An export node 0 redoes (its output was deleted): the follower waits for the new attempt, not the old one."""
    cfg = config(tmp_path)
    cfg = load_config({**cfg.model_dump(exclude_none=True), "stages": [
        cfg.stage("a").model_dump(exclude_none=True), {"name": "ex", "type": "export", "model": "a"},
        {**cfg.stage("b").model_dump(exclude_none=True), "model": "ex"}]})
    leader = Leader(cfg)
    ex = cfg.stage("ex")
    ex_fp = stage_fingerprint(ex, cfg, follower_outputs_fp(cfg, leader))
    old = {"status": "done", "fingerprint": ex_fp, "run_id": "old"}  # done once, but ex/model is gone
    write_json(leader.path, {"stages": {"a": leader.a, "ex": old}})
    launched = []
    monkeypatch.setattr(runner, "run_stage", lambda ctx, collect=True: launched.append(ctx.stage.name) or {})

    def node_0_redoes_the_export():
        new = {"status": "done", "fingerprint": ex_fp, "run_id": "new"}
        b_fp = stage_fingerprint(cfg.stage("b"), cfg, _output_fingerprint(ex_fp, new))
        write_json(leader.path, {"stages": {"a": leader.a, "ex": new,
                                            "b": {"status": "done", "fingerprint": b_fp, "run_id": "b1"}}})

    for wait in ("WAIT_FOR_START_S", "WAIT_AFTER_STAGE_S", "WAIT_FOR_EXPORT_S"):
        monkeypatch.setattr(follower, wait, 3.0)
    threading.Timer(0.4, node_0_redoes_the_export).start()
    follower.follow(cfg, {"a", "ex", "b"}, False, Console(quiet=True), poll=0.05)
    assert launched == ["b"]  # with the old run id, b's fingerprint would not match node 0's: never launched


def follower_outputs_fp(cfg, leader):
    """What `b` starts from, as the follower computes it: `a`'s output, from node 0's run id."""
    return _output_fingerprint(leader.a["fingerprint"], leader.a)


@pytest.mark.parametrize("ends,message", [("failed", "stage b failed on node 0: boom"),
                                          ("interrupted", "stage b was interrupted on node 0; run the same command")])
def test_a_stage_that_failed_or_was_interrupted_on_node_0_stops_this_node_too(tmp_path, monkeypatch, ends, message):
    cfg = config(tmp_path)
    leader = Leader(cfg, ends=ends)
    monkeypatch.setattr(runner, "run_stage", lambda ctx, collect=True: leader.finish(
        ctx.stage.name, stage_fingerprint(ctx.stage, cfg, follower_outputs_fp(cfg, leader))))
    leader.start("b")
    with pytest.raises(PosttrainError, match=message):
        run(cfg)


def test_without_node_0s_manifest_it_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(follower, "WAIT_FOR_MANIFEST_S", 0.2)
    with pytest.raises(PosttrainError, match=r"manifest.json did not appear; .*shares"):
        follower.follow(config(tmp_path), {"a", "b", "ev"}, False, Console(quiet=True),
                        poll=0.05)


def test_an_export_no_later_stage_starts_from_is_not_waited_for(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    cfg = load_config({**cfg.model_dump(exclude_none=True), "stages": [
        *[s.model_dump(exclude_none=True) for s in cfg.stages], {"name": "ex", "type": "export", "model": "b"}]})
    leader = Leader(cfg)

    def fake_run_stage(ctx, collect=True):
        leader.finish(ctx.stage.name, stage_fingerprint(ctx.stage, cfg, follower_outputs_fp(cfg, leader)))
        return {}

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    monkeypatch.setattr(follower, "WAIT_FOR_EXPORT_S", 0.5)  # were it waited for, the run would fail after this
    leader.start("b")
    assert run(cfg) == tmp_path / "run"
