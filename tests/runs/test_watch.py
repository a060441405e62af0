"""runs/watch: runs found under roots (and nothing through a link), logs read incrementally up to a whole line,
and each stage's progress and headline figure as a run list shows them."""

import json
import os

from posttrain.runs.watch import find_runs, last_rows, overview, read_log


def _run(folder, stages: dict, order=None):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(
        {"name": folder.name, "created": "2026-12-07T10:00:00+00:00", "stage_order": order or list(stages),
         "stages": stages}))
    return folder


def _log(path, rows, tail=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + tail)


def test_runs_are_found_at_any_depth_down_to_the_limit_and_not_through_links(tmp_path):
    a = _run(tmp_path / "runs" / "a", {})
    b = _run(tmp_path / "runs" / "sweep" / "b", {})
    _run(tmp_path / "runs" / "x" / "y" / "z" / "too-deep", {})
    _run(a / "nested", {})  # inside a run: not searched
    outside = _run(tmp_path / "elsewhere" / "c", {})
    os.symlink(outside, tmp_path / "runs" / "link")
    assert find_runs([tmp_path / "runs"]) == [a, b]
    assert find_runs([a]) == [a]  # a run given itself
    assert find_runs([tmp_path / "missing"]) == []


def test_a_log_is_read_from_where_the_last_look_ended_up_to_its_last_whole_line(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    _log(path, [{"current_steps": 1, "loss": 2.0}], tail='{"current_steps": 2, "lo')
    rows, offset = read_log(path)
    assert rows == [{"current_steps": 1, "loss": 2.0}]
    with open(path, "a") as f:
        f.write('ss": 1.5}\nnot json\n[1]\n')
    rows, offset = read_log(path, offset)
    assert rows == [{"current_steps": 2, "loss": 1.5}] and offset == path.stat().st_size
    assert read_log(path, offset) == ([], offset)
    _log(path, [{"current_steps": 1, "loss": 9.0}])  # truncated on resume: read again from the start
    assert read_log(path, offset)[0] == [{"current_steps": 1, "loss": 9.0}]
    assert read_log(tmp_path / "missing.jsonl") == ([], 0)


def test_the_overview_gives_each_stage_its_state_progress_and_headline(tmp_path):
    run = _run(tmp_path / "quick", {
        "sft": {"type": "sft", "status": "done", "seconds": 16.3, "metrics": {"train_loss": 1.38}},
        "grpo": {"type": "grpo", "status": "running", "pid": os.getpid(), "started": "2026-12-07T10:01:00+00:00"},
        "eval": {"type": "eval", "status": "done", "metrics": {}},
    }, order=["sft", "grpo", "eval", "export"])
    _log(run / "sft" / "trainer_log.jsonl", [{"current_steps": 150, "total_steps": 150, "percentage": 100.0,
                                              "remaining_time": "0:00:00", "train_loss": 1.38}])
    _log(run / "grpo" / "trainer_log.jsonl", [{"current_steps": 12, "total_steps": 60, "percentage": 20.0,
                                               "remaining_time": "0:00:40", "loss": 0.01, "reward": -1.2}])
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps(
        {"metric_names": ["reward:sample_size_estimation"],
         "figures": {"base": {"reward:sample_size_estimation": -2.0},
                     "grpo": {"reward:sample_size_estimation": 0.15}}}))
    seen = overview(run)
    assert seen["name"] == "quick" and seen["created"] == "2026-12-07T10:00:00+00:00"
    sft, grpo, evaluation, export = seen["stages"]
    assert (sft["status"], sft["seconds"], sft["headline"]) == ("done", 16.3, {"name": "train loss", "value": 1.38})
    assert sft["progress"] == {"step": 150, "total": 150, "percentage": 100.0, "remaining": "0:00:00"}
    assert grpo["status"] == "running"
    assert grpo["progress"] == {"step": 12, "total": 60, "percentage": 20.0, "remaining": "0:00:40"}
    assert grpo["headline"] == {"name": "reward (latest)", "value": -1.2}
    assert evaluation["headline"] == {"name": "grpo reward:sample_size_estimation", "value": 0.15}
    assert (export["status"], export["progress"], export["headline"]) == ("pending", None, None)


def test_a_stage_whose_process_is_gone_is_interrupted_and_a_failed_one_keeps_its_error(tmp_path):
    run = _run(tmp_path / "r", {
        "sft": {"type": "sft", "status": "running", "pid": 2 ** 22 + 12345},
        "dpo": {"type": "dpo", "status": "failed", "error": "CUDA out of memory"},
    })
    sft, dpo = overview(run)["stages"]
    assert sft["status"] == "interrupted"
    assert (dpo["status"], dpo["error"]) == ("failed", "CUDA out of memory")


def test_the_last_rows_are_read_from_the_end_alone_and_start_at_a_whole_line(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    rows = [{"current_steps": i, "loss": 1.0 / i, "note": "x" * 50} for i in range(1, 401)]
    _log(path, rows, tail='{"current_steps": 401')
    for nbytes in (300, 1000, 7777, 10 ** 9):  # each more than a row and the unfinished tail
        tail = last_rows(path, nbytes)
        assert tail and tail == rows[-len(tail):]  # whole rows, the last ones, none cut
    assert len(last_rows(path, 1000)) < 15 and last_rows(path, 10 ** 9) == rows
    assert last_rows(tmp_path / "missing.jsonl") == []
