"""The launch block: command-line values over the file's, checked; which stages launch; never in a fingerprint."""

from __future__ import annotations

import pytest

from posttrain.config import load_config
from posttrain.errors import ConfigError, PosttrainError
from posttrain.launch import launched, with_launch
from tests.conftest import make_chats, write_jsonl


def config(tmp_path, **top) -> dict:
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    rl = write_jsonl(tmp_path / "rl.jsonl", [{"prompt": [{"role": "user", "content": "n?"}], "data_source": "x",
                                             "ground_truth": 1}])
    return {"name": "p", "model": "models/none", "output_dir": str(tmp_path / "run"), **top,
            "stages": [{"name": "sft1", "type": "sft", "data": str(data)},
                       {"name": "g", "type": "grpo", "model": "sft1", "data": {"path": str(rl), "format": "rl_prompt"},
                        "rewards": ["exact_match"],
                        "trainer": {"per_device_train_batch_size": 2, "num_generations": 4}},
                       {"name": "ev", "type": "eval", "models": ["sft1"],
                        "data": {"path": str(rl), "format": "rl_prompt"}, "metrics": ["reward:exact_match"]}]}


def test_command_line_values_override_the_files_block(tmp_path):
    loaded = load_config(config(tmp_path, launch={"nproc": 8, "master_port": 29999}))
    merged = with_launch(loaded, {"nproc": 2, "nnodes": None, "master_addr": None})
    assert (merged.launch.nproc, merged.launch.nnodes, merged.launch.master_port) == (2, 1, 29999)
    assert merged.launch.processes == 2
    assert with_launch(loaded, {}) is loaded


@pytest.mark.parametrize("launch, message", [
    ({"nnodes": 2, "node_rank": 2}, "node_rank 2 is not below nnodes 2"),
    ({"nproc": 0}, "launch.nproc"),
    ({"master_port": 70000}, "launch.master_port"),
    ({"nnodes": 2, "node_rank": 1}, "nnodes 2 needs master_addr: the address of node 0"),
])
def test_bad_values_are_config_errors(tmp_path, launch, message):
    loaded = load_config(config(tmp_path))
    with pytest.raises(ConfigError, match=message):
        with_launch(loaded, launch)


def test_a_files_launch_block_is_checked_too(tmp_path):
    with pytest.raises(ConfigError, match=r"launch: unknown key 'nprocs'; did you mean 'nproc'"):
        load_config(config(tmp_path, launch={"nprocs": 2}))


def test_only_training_stages_launch(tmp_path):
    one, two = load_config(config(tmp_path)), load_config(config(tmp_path, launch={"nproc": 2}))
    assert [launched(s, one) for s in one.stages] == [False, False, False]
    assert [launched(s, two) for s in two.stages] == [True, True, False]  # eval runs in the parent


def test_the_launch_is_in_no_fingerprint(tmp_path):
    from posttrain.pipeline import stage_fingerprint

    one = load_config(config(tmp_path))
    many = load_config(config(tmp_path, launch={"nproc": 8, "nnodes": 4, "node_rank": 3, "master_addr": "h"}))
    for a, b in zip(one.stages, many.stages):
        assert stage_fingerprint(a, one, "m") == stage_fingerprint(b, many, "m")
    engine = load_config(config(tmp_path) | {"stages": [dict(config(tmp_path)["stages"][0], deepspeed="zero2")]})
    assert stage_fingerprint(engine.stages[0], engine, "m") != stage_fingerprint(one.stages[0], one, "m")


def test_grpo_checks_its_generation_round_against_the_launchs_processes(tmp_path):
    from posttrain.stages import grpo

    # 2 per device x 3 processes = 6 completions a round: not whole groups of 4
    three = load_config(config(tmp_path, launch={"nproc": 3}))
    with pytest.raises(PosttrainError, match=r"per_device_train_batch_size 2 x 3 process\(es\)"):
        grpo.plan(three.stage("g"), three, tmp_path / "ck")
    two = load_config(config(tmp_path, launch={"nproc": 2}))
    grpo.plan(two.stage("g"), two, tmp_path / "ck")


def test_a_single_stage_file_and_a_recipe_take_a_launch_block(tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    single = load_config({"model": "m", "type": "sft", "data": str(data), "launch": {"nproc": 2}})
    assert single.launch.nproc == 2
    recipe = {"model_name_or_path": "m", "stage": "sft", "dataset": "d", "finetuning_type": "full"}
    assert load_config(recipe, ["launch.nproc=4"]).launch.nproc == 4


def test_master_addr_given_once_holds_across_overrides(tmp_path):
    loaded = load_config(config(tmp_path, launch={"nnodes": 2, "master_addr": "127.0.0.1"}))
    assert with_launch(loaded, {"node_rank": 1}).launch.master_addr == "127.0.0.1"
