"""posttrain/runs/ownership.py, and every way into a run directory: a file planted beside it survives."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.errors import PosttrainError
from posttrain.pipeline import run
from posttrain.runs.ownership import OutsideError, check_inside, check_no_links_out, remove_tree
from tests.conftest import make_chats, write_jsonl

TRAINER = {"max_steps": 1, "max_length": 64, "per_device_train_batch_size": 2, "report_to": "none",
           "logging_steps": 1, "save_steps": 1, "dataset_num_proc": None}


# ---- the checks themselves -----------------------------------------------------------------------------------------

def test_a_path_inside_its_owner_is_removed(tmp_path):
    (tmp_path / "owner" / "a" / "b").mkdir(parents=True)
    (tmp_path / "owner" / "a" / "b" / "f").write_text("x")
    remove_tree(tmp_path / "owner" / "a", tmp_path / "owner")
    assert list((tmp_path / "owner").iterdir()) == []
    remove_tree(tmp_path / "owner" / "gone", tmp_path / "owner")  # nothing there: no error


@pytest.mark.parametrize("path", ["owner", "owner/..", "owner/../beside", "beside"])
def test_a_path_not_strictly_inside_its_owner_is_refused(tmp_path, path):
    (tmp_path / "owner").mkdir()
    (tmp_path / "beside").mkdir()
    with pytest.raises(OutsideError, match="not inside"):
        remove_tree(tmp_path / path, tmp_path / "owner")
    assert (tmp_path / "owner").is_dir() and (tmp_path / "beside").is_dir()


def test_a_link_out_of_the_owner_is_refused_and_a_link_inside_it_is_unlinked_not_followed(tmp_path):
    owner, victim = tmp_path / "owner", tmp_path / "victim"
    owner.mkdir()
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    (owner / "out").symlink_to(victim)
    with pytest.raises(OutsideError, match=f"leads to {victim}, outside .*through a symbolic link"):
        remove_tree(owner / "out", owner)
    with pytest.raises(OutsideError):
        check_no_links_out(owner)
    (owner / "inner").mkdir()
    (owner / "inner" / "f").write_text("x")
    (owner / "out").unlink()
    (owner / "link").symlink_to(owner / "inner")
    check_no_links_out(owner)
    remove_tree(owner / "link", owner)
    assert not (owner / "link").exists() and (owner / "inner" / "f").read_text() == "x"
    assert (victim / "keep.txt").read_text() == "mine"


def test_links_deep_in_a_tree_are_found(tmp_path):
    (tmp_path / "run" / "a" / "b").mkdir(parents=True)
    (tmp_path / "run" / "a" / "b" / "log.jsonl").symlink_to(tmp_path / "victim.txt")
    with pytest.raises(OutsideError, match="log.jsonl: leads to"):
        check_no_links_out(tmp_path / "run")
    check_inside(tmp_path / "run" / "a", tmp_path / "run")


# ---- a pipeline run: stage names, links planted in the run directory, --force ----------------------------------------

def _pipeline(tmp_path, tiny_model, stage_name="sft1", output_dir=None) -> dict:
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(8, seed=1))
    return {"name": "p", "model": str(tiny_model), "output_dir": str(output_dir or tmp_path / "victim" / "run"),
            "stages": [{"name": stage_name, "type": "sft", "data": str(data), "trainer": dict(TRAINER)}]}


def _plant(tmp_path) -> dict:
    """Files beside the run directory, and what they hold."""
    victim = tmp_path / "victim"
    (victim / "data" / "checkpoints" / "checkpoint-9").mkdir(parents=True)  # half-written: pruning would delete it
    planted = {victim / "notes.txt": "beside the run", victim / "data" / "keep.txt": "mine",
               victim / "data" / "checkpoints" / "checkpoint-9" / "weights.bin": "old"}
    for path, text in planted.items():
        path.write_text(text)
    return planted


def _survived(planted: dict) -> None:
    for path, text in planted.items():
        assert path.read_text() == text, path


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("name", ["..", ".", "../x", "a b", "sft.1"])
def test_a_stage_name_that_is_no_identifier_is_refused_by_validate_and_run(tmp_path, tiny_model, name):
    planted = _plant(tmp_path)
    (tmp_path / "victim" / "run").mkdir()
    (tmp_path / "victim" / "run" / "x").mkdir()
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump(_pipeline(tmp_path, tiny_model, stage_name=name)))
    for command in (["validate", config], ["run", config], ["run", config, "--force"]):
        result = _cli(*command)
        assert result.exit_code == 2, result.output
        assert "expected an identifier: letters, digits, _ and -" in result.output
    _survived(planted)
    assert sorted(p.name for p in (tmp_path / "victim").iterdir()) == ["data", "notes.txt", "run"]


@pytest.mark.parametrize("name", ["..", "."])
def test_a_pipeline_named_only_dots_is_refused(tmp_path, tiny_model, name):
    config = _pipeline(tmp_path, tiny_model)
    config["name"] = name
    del config["output_dir"]  # runs/<name>
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _cli("validate", path)
    assert result.exit_code == 2 and "not only dots" in result.output, result.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model):
    """A run whose one SFT stage finished (a checkpoint included), copied by each test that plants links in it."""
    root = tmp_path_factory.mktemp("finished")
    config = _pipeline(root, tiny_model)
    run(config)
    return root / "victim" / "run", config


def _copy_run(finished_run, tmp_path):
    source, config = finished_run
    run_dir = tmp_path / "victim" / "run"
    shutil.copytree(source, run_dir, symlinks=True)
    (tmp_path / "chats.jsonl").write_text((source.parent.parent / "chats.jsonl").read_text())
    return run_dir, {**config, "output_dir": str(run_dir),
                     "stages": [{**config["stages"][0], "data": str(tmp_path / "chats.jsonl")}]}


LINKS = {  # where in the run directory -> the planted file or folder it leads to
    "sft1": "data",
    "sft1/checkpoints": "data/checkpoints",
    "sft1/model": "data",
    "sft1/model.tmp": "data",
    "sft1/trainer_log.jsonl": "notes.txt",
    "sft1/checkpoints/checkpoint-1/optimizer.pt": "notes.txt",
}


@pytest.mark.parametrize("force", [False, True], ids=["changed-config", "force"])
@pytest.mark.parametrize("where", list(LINKS))
def test_a_link_out_of_the_run_directory_is_refused_and_nothing_beside_it_is_touched(
        tmp_path, finished_run, where, force):
    run_dir, config = _copy_run(finished_run, tmp_path)
    planted = _plant(tmp_path)
    link = run_dir / where
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif os.path.lexists(link):
        link.unlink()
    link.symlink_to(tmp_path / "victim" / LINKS[where])
    overrides = [] if force else ["stages.sft1.trainer.learning_rate=1e-3"]
    with pytest.raises(OutsideError, match="through a symbolic link; posttrain does not delete or write through it"):
        run(config, overrides, force=force)
    _survived(planted)
    assert (tmp_path / "victim" / "data" / "checkpoints" / "checkpoint-9").is_dir()


def test_a_lock_file_linked_elsewhere_is_not_truncated(tmp_path, finished_run):
    run_dir, config = _copy_run(finished_run, tmp_path)
    planted = _plant(tmp_path)
    (run_dir / ".lock").unlink()
    (run_dir / ".lock").symlink_to(tmp_path / "victim" / "notes.txt")
    with pytest.raises(PosttrainError, match=r"\.lock: cannot be opened as this run's lock file"):
        run(config, force=True)
    _survived(planted)


def test_force_reruns_a_stage_of_its_own_run(tmp_path, finished_run):
    run_dir, config = _copy_run(finished_run, tmp_path)
    planted = _plant(tmp_path)
    weights = run_dir / "sft1" / "model" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    run(config, force=True)
    assert weights.stat().st_mtime_ns != mtime
    _survived(planted)


def test_a_folder_the_run_did_not_make_is_neither_deleted_nor_written_into(tmp_path, tiny_model):
    """output_dir: a project folder that holds a folder of the stage's name (a user's own `docs`, say)."""
    project = tmp_path / "project"
    (project / "sft1").mkdir(parents=True)
    (project / "sft1" / "notes.txt").write_text("mine")
    config = _pipeline(tmp_path, tiny_model, output_dir=project)
    for force in (False, True):
        with pytest.raises(PosttrainError, match="sft1: already exists and is not stage sft1's"):
            run(config, force=force)
    assert [p.name for p in (project / "sft1").iterdir()] == ["notes.txt"]
    assert not json.loads((project / "manifest.json").read_text())["stages"]


def test_a_run_directory_reached_through_a_link_still_runs(tmp_path, finished_run):
    """A link *to* the run directory (runs/ on a bigger disk) is the user's choice, not a way out of it."""
    run_dir, config = _copy_run(finished_run, tmp_path)
    (tmp_path / "runs").symlink_to(run_dir.parent)
    run({**config, "output_dir": str(tmp_path / "runs" / "run")}, force=True)
    assert (run_dir / "sft1" / "model" / "model.safetensors").is_file()


# ---- the other commands that replace a directory -----------------------------------------------------------------

def test_init_model_replaces_only_a_model_directory(tmp_path, chat_corpus, monkeypatch):
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "a.txt").write_text("mine")
    monkeypatch.chdir(home)
    for out in (".", "docs", home):
        result = _cli("init-model", out, "--corpus", chat_corpus)
        assert result.exit_code == 2, result.output
        assert "is not a model directory" in result.output
    (tmp_path / "elsewhere").mkdir()
    (home / "linked").symlink_to(tmp_path / "elsewhere")
    result = _cli("init-model", "linked", "--corpus", chat_corpus)
    assert result.exit_code == 2 and "a symbolic link to" in result.output, result.output
    assert _cli("init-model", "m", "--corpus", chat_corpus).exit_code == 0
    assert _cli("init-model", "m", "--corpus", chat_corpus).exit_code == 0  # an earlier model: replaced
    assert (home / "docs" / "a.txt").read_text() == "mine"
    assert sorted(p.name for p in home.iterdir()) == ["docs", "linked", "m"]


def test_export_force_replaces_only_a_model_and_never_through_a_link(tmp_path, tiny_model):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    (tmp_path / "link").symlink_to(victim)
    result = _cli("export", "--model", tiny_model, "--out", victim, "--force")
    assert result.exit_code == 2 and "not a model directory" in result.output, result.output
    result = _cli("export", "--model", tiny_model, "--out", tmp_path / "link", "--force")
    assert result.exit_code == 2 and "a symbolic link to" in result.output, result.output
    assert [p.name for p in victim.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "victim"]


def test_an_eval_model_given_as_dots_gets_a_folder_inside_the_stage():
    from posttrain.stages.eval import Config as EvalStage

    for ref in (".", "..", "../..", "a/..", "/"):
        label = EvalStage.label(ref)
        assert label.strip(".") and "/" not in label, (ref, label)
