"""`posttrain validate` (posttrain/pipeline/validate.py): every problem of a pipeline listed before any training, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.pipeline.validate import validate
from tests.conftest import make_chats, write_jsonl

runner = CliRunner()
POSTTRAIN = Path(sys.executable).parent / "posttrain"
EMPTY_ANSWER = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}


def _flat(text: str) -> str:
    """Text without whitespace: off a terminal rich wraps (and folds long paths) at 80 columns; compare
    both sides flattened."""
    return "".join(text.split())


def _pipeline(path: Path, model, stages: list[dict], **top) -> Path:
    path.write_text(yaml.safe_dump({"name": "v", "model": str(model), "output_dir": str(path.parent / "run"),
                                    "stages": stages, **top}), encoding="utf-8")
    return path


@pytest.fixture
def good(tiny_model, tmp_path) -> Path:
    data = write_jsonl(tmp_path / "good.jsonl", make_chats(10))
    return _pipeline(tmp_path / "good.yaml", tiny_model, [
        {"name": "s1", "type": "sft", "data": {"path": str(data), "format": "openai"}, "trainer": {"max_length": 128}},
        {"name": "s2", "type": "sft", "model": "s1", "data": str(data)},
    ])


@pytest.fixture
def bad(tiny_model, tmp_path) -> tuple[Path, dict]:
    return _bad(tiny_model, tmp_path)


def _bad(tiny_model, tmp_path: Path) -> tuple[Path, dict]:
    """A pipeline with four problems: two bad records, a model dir without config.json, a missing data file."""
    records = tmp_path / "bad.jsonl"
    records.write_text(json.dumps(make_chats(1)[0]) + "\n" + json.dumps(EMPTY_ANSWER) + "\n{oops\n", encoding="utf-8")
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    (no_config / "tokenizer.json").write_text("{}")
    missing = tmp_path / "missing.jsonl"
    path = _pipeline(tmp_path / "bad.yaml", tiny_model, [
        {"name": "s1", "type": "sft", "data": {"path": str(records), "format": "openai"}},
        {"name": "s2", "type": "sft", "model": str(no_config), "data": str(missing)},
    ])
    problems = {
        "record": f"{records}:2: messages[1].content: empty; expected text",
        "json": f"{records}:3: json: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        "model": f"stages.s2.model: {no_config}: no config.json; expected a Hugging Face model directory",
        "data": f"stages.s2.data: {missing}: no such file",
    }
    return path, problems


def test_good_pipeline(good):
    report = validate(good)
    assert report.ok and report.problems == []
    assert report.notes[0] == "config: 2 stage(s): s1 (sft), s2 (sft)"
    data = good.parent / "good.jsonl"
    checked = [note for note in report.notes if ".data: " in note]  # not the notes on this machine's precision
    assert f"stages.s1.data: {data}: 10 valid records" in checked[0]
    assert checked[0].endswith("; 0 over max_length 128")
    assert checked[1].endswith("; 0 over max_length 1024")  # the default max_length


def test_good_pipeline_cli(good):
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    out = _flat(result.stdout)
    assert _flat("ok config: 2 stage(s): s1 (sft), s2 (sft)") in out
    assert _flat("config, tokenizer and chat template found") in out
    assert out.endswith(_flat("0 over max_length 1024 valid"))
    assert result.stderr == ""


def test_every_problem_listed(bad):
    path, problems = bad
    report = validate(path)
    assert not report.ok
    assert sorted(report.problems) == sorted(problems.values())


def test_every_problem_listed_cli(bad):
    path, problems = bad
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    err = _flat(result.stderr)
    for problem in problems.values():
        assert _flat(f"problem {problem}") in err
    assert err.endswith(_flat("4 problem(s)"))
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def bad_subprocess(tiny_model, tmp_path_factory):
    path, problems = _bad(tiny_model, tmp_path_factory.mktemp("validate"))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    result = subprocess.run([str(POSTTRAIN), "validate", str(path)], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL, env=env, cwd=path.parent)
    return result, problems, path


def test_exit_status_of_the_real_command(bad_subprocess):
    result, problems, path = bad_subprocess
    assert result.returncode == 2, result.stderr
    err = _flat(result.stderr)
    for problem in problems.values():
        assert _flat(f"problem {problem}") in err
    assert _flat("4 problem(s)") in err
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in path.parent.iterdir()) == ["bad.jsonl", "bad.yaml", "no-config"]  # wrote nothing


def test_each_problem_on_one_line(bad_subprocess):
    result, problems, _ = bad_subprocess
    lines = result.stderr.splitlines()
    for problem in problems.values():
        assert f"problem {problem}" in lines


def test_unknown_key_exit_2(good):
    result = runner.invoke(app, ["validate", str(good), "stages.s1.trainer.lerning_rate=1e-5", "modle=x"])
    assert result.exit_code == 2
    err = _flat(result.stderr)
    assert _flat(f"{good}: invalid config") in err
    assert _flat("stages.s1.trainer: unknown key 'lerning_rate' for SFTConfig; did you mean 'learning_rate'?") in err
    assert _flat("(top level): unknown key 'modle'; did you mean 'model'?") in err
    assert err.endswith(_flat("1 problem(s)"))
    assert result.stdout == ""


def test_model_override_without_config_json(good, tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    report = validate(good, [f"model={empty}"])
    assert report.problems == [f"model: {empty}: no config.json; expected a Hugging Face model directory"]
    # data is still checked, without token lengths
    assert any(note.endswith("good.jsonl: 10 valid records") for note in report.notes)


def test_missing_model_dir(good, tmp_path):
    report = validate(good, [f"model={tmp_path / 'nope'}"])
    assert report.problems == [f"model: {tmp_path / 'nope'}: no such model directory"]


def test_later_stage_as_input(good):
    report = validate(good, ["stages.s1.model=s2"])
    assert report.problems == ["stages.s1.model: 's2' is a later stage; start from an earlier one"]


def test_records_over_max_length_counted(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "long.jsonl", make_chats(4, seed=1, min_words=200, max_words=300)
                       + make_chats(6, seed=2))
    path = _pipeline(tmp_path / "long.yaml", tiny_model,
                     [{"name": "s1", "type": "sft", "data": str(data), "trainer": {"max_length": 128}}])
    report = validate(path)
    assert report.ok  # over-long records are a warning, not a problem
    note = next(n for n in report.notes if n.startswith("stages.s1.data"))
    assert "10 valid records" in note and note.endswith("; 4 over max_length 128")
    result = runner.invoke(app, ["validate", str(path), "stages.s1.trainer.max_length=100000"])
    assert result.exit_code == 0
    assert _flat("0 over max_length 100000") in _flat(result.stdout)


def test_trainer_values_the_trl_config_rejects_are_problems(good):
    report = validate(str(good), ["stages.s1.trainer.lr_scheduler_type=cosin"])
    assert not report.ok
    assert any("stages.s1.trainer: cosin is not a valid SchedulerType" in p for p in report.problems)


def test_training_records_in_the_eval_data_are_a_problem(tiny_model, tmp_path):
    chats = make_chats(12, seed=9)
    train = write_jsonl(tmp_path / "train.jsonl", chats)
    held = write_jsonl(tmp_path / "eval.jsonl", chats[10:] + make_chats(3, seed=10))
    config = _pipeline(tmp_path / "p.yaml", tiny_model, [
        {"name": "s1", "type": "sft", "data": str(train), "eval_data": str(held)}])
    report = validate(str(config))
    leaks = [p for p in report.problems if "also in" in p and str(held) in p]
    assert [p.split(": ")[0] for p in leaks] == [f"{train}:11", f"{train}:12"]


def test_an_output_dir_outside_the_working_directory_is_noted_and_an_unwritable_one_is_a_problem(good, monkeypatch):
    outside = [n for n in validate(good).notes if n.startswith("output_dir:")]
    assert outside == [f"output_dir: {(good.parent / 'run').resolve()} is outside the working directory "
                       f"({Path.cwd()}); runs go there"]
    monkeypatch.chdir(good.parent)
    assert not [n for n in validate(good).notes if n.startswith("output_dir:")]
    (good.parent / "a-file").write_text("")
    report = validate(good, ["output_dir=a-file/run"])
    assert f"output_dir: {good.parent.resolve() / 'a-file' / 'run'}: {good.parent.resolve() / 'a-file'} is not a " \
           "directory this user can write to" in report.problems
