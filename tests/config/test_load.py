"""posttrain/config.py: YAML + dotted overrides -> typed configs; every bad key named with its closest valid one."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import trl

from posttrain.config import load_config, parse_yaml
from posttrain.stages.sft import Config as SFTStage
from posttrain.errors import ConfigError

BASE = {
    "name": "p",
    "model": "models/base",
    "stages": [
        {"name": "sft1", "type": "sft", "data": {"path": "a.jsonl", "format": "openai"},
         "trainer": {"learning_rate": 1e-4}},
        {"name": "sft2", "type": "sft", "model": "sft1", "data": "b.jsonl"},
    ],
}


def _raw(**changes) -> dict:
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return raw


def _stage(i: int = 0, **changes) -> dict:
    stage = copy.deepcopy(BASE["stages"][i])
    stage.update(changes)
    return stage


def _error(source, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return str(info.value)


# ---- overrides ---------------------------------------------------------------------------------------------------

def test_overrides_by_stage_name_index_and_top_level():
    config = load_config(_raw(), ["stages.sft1.trainer.learning_rate=2e-5", "stages.1.trainer.max_steps=3",
                                  "model=/some/dir", "seed=7"])
    assert config.model == "/some/dir"
    assert config.seed == 7
    assert config.stage("sft1").trainer == {"learning_rate": 2e-5}
    assert isinstance(config.stage("sft1").trainer["learning_rate"], float)
    assert config.stage("sft2").trainer == {"max_steps": 3}
    assert config.output_dir == "runs/p"


def test_override_does_not_touch_the_input_dict():
    raw = _raw()
    load_config(raw, ["stages.sft1.trainer.learning_rate=2e-5"])
    assert raw == BASE


def test_override_into_a_data_spec():
    config = load_config(_raw(), ["stages.sft1.data.format=alpaca", "stages.sft1.data.max_samples=5"])
    (data,) = config.stage("sft1").data
    assert (data.path, data.format, data.max_samples) == ("a.jsonl", "alpaca", 5)


@pytest.mark.parametrize("override,message", [
    ("stages.nope.trainer.learning_rate=1", "override stages.nope.trainer.learning_rate: no item named 'nope'"),
    ("stages.sfx1.trainer.learning_rate=1", "override stages.sfx1.trainer.learning_rate: no item named 'sfx1'; "
                                            "did you mean 'sft1'?"),
    ("stages.5.trainer.max_steps=1", "override stages.5.trainer.max_steps: no item named '5'"),
    ("stages.sft1.trainer.learning_rate", "override 'stages.sft1.trainer.learning_rate': expected key.path=value"),
    ("name.x=1", "override name.x: name is not a mapping"),
])
def test_bad_overrides(override, message):
    assert _error(_raw(), [override]) == message


def test_override_with_an_unknown_key_is_an_error_naming_the_closest():
    message = _error(_raw(), ["stages.sft1.trainer.lerning_rate=1e-5"])
    assert "stages.sft1.trainer: unknown key 'lerning_rate' for SFTConfig; did you mean 'learning_rate'?" in message


# ---- YAML floats -------------------------------------------------------------------------------------------------

def test_yaml_exponent_floats_without_a_dot_are_floats():
    values = parse_yaml("a: 1e-5\nb: 1.0e-5\nc: -2E+3\nd: 10\ne: 1.5\nf: .5\ng: 1e5x\nh: 3")
    assert values == {"a": 1e-5, "b": 1e-5, "c": -2000.0, "d": 10, "e": 1.5, "f": 0.5, "g": "1e5x", "h": 3}
    assert [type(values[k]) for k in "acdgh"] == [float, float, int, str, int]


def test_yaml_floats_in_a_file_and_in_an_override(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nmodel: m\nstages:\n  - name: s\n    type: sft\n    data: d.jsonl\n"
                    "    trainer: {learning_rate: 1e-5, weight_decay: 1e-2}\n")
    config = load_config(path, ["stages.s.trainer.weight_decay=3e-3"])
    trainer = config.stage("s").trainer
    assert trainer == {"learning_rate": 1e-5, "weight_decay": 3e-3}
    assert all(isinstance(v, float) for v in trainer.values())


# ---- unknown keys at every level ---------------------------------------------------------------------------------

def test_unknown_top_level_key():
    assert _error(_raw(modle="x")) == "invalid config\n  (top level): unknown key 'modle'; did you mean 'model'?"


def test_unknown_stage_key():
    message = _error(_raw(stages=[_stage(0, templat="chatml")]))
    assert message == "invalid config\n  stages.sft1: unknown key 'templat'; did you mean 'template'?"


def test_unknown_data_spec_key():
    message = _error(_raw(stages=[_stage(0, data={"path": "a.jsonl", "fromat": "openai"})]))
    assert message.startswith("invalid config\n  stages.sft1.data: unknown key 'fromat'; did you mean 'format'?")


def test_unknown_data_spec_key_gives_one_line():
    message = _error(_raw(stages=[_stage(0, data={"path": "a.jsonl", "fromat": "openai"})]))
    assert message == "invalid config\n  stages.sft1.data: unknown key 'fromat'; did you mean 'format'?"


def test_unknown_lora_key():
    message = _error(_raw(stages=[_stage(0, finetuning="lora", lora={"alpah": 8})]))
    assert message == "invalid config\n  stages.sft1.lora: unknown key 'alpah'; did you mean 'alpha'?"


def test_unknown_trainer_key():
    message = _error(_raw(stages=[_stage(0, trainer={"num_train_epoch": 1})]))
    assert message == ("invalid config\n  stages.sft1.trainer: unknown key 'num_train_epoch' for SFTConfig; "
                       "did you mean 'num_train_epochs'?")


def test_trainer_keys_are_sftconfigs_real_fields():
    fields = {f.name for f in dataclasses.fields(trl.SFTConfig) if f.init} - {"output_dir"}
    # SFTConfig's own fields, TrainingArguments' fields, all accepted as they are
    some = {"max_length", "packing", "assistant_only_loss", "dataset_text_field", "learning_rate",
            "gradient_accumulation_steps", "lr_scheduler_type", "max_steps"}
    assert some <= fields
    config = load_config(_raw(stages=[_stage(0, trainer={key: None for key in some})]))
    assert set(config.stage("sft1").trainer) == some
    # a GRPOConfig field is not an SFTConfig field
    assert "num_generations" not in fields
    assert "unknown key 'num_generations' for SFTConfig" in _error(
        _raw(stages=[_stage(0, trainer={"num_generations": 4})]))


def test_output_dir_in_trainer_is_rejected():
    message = _error(_raw(stages=[_stage(0, trainer={"output_dir": "elsewhere"})]))
    assert message == ("invalid config\n  stages.sft1.trainer: 'output_dir' is set by posttrain "
                       "(each stage writes to <output_dir>/<stage>/)")


# ---- stages --------------------------------------------------------------------------------------------------------

def test_unknown_stage_type():
    message = _error(_raw(stages=[_stage(0, type="sfft")]))
    from posttrain.stages import STAGES as STAGE_CONFIGS

    assert message == ("invalid config\n  stages.sft1.type: unknown stage type 'sfft'; "
                       f"known: {', '.join(STAGE_CONFIGS)}; did you mean 'sft'?")


def test_duplicate_stage_names():
    message = _error(_raw(stages=[_stage(0), _stage(0)]))
    assert message == "invalid config\n  (top level): stage name 'sft1' is used twice or is reserved"


def test_stage_named_base_is_reserved():
    assert "stage name 'base' is used twice or is reserved" in _error(_raw(stages=[_stage(0, name="base")]))


@pytest.mark.parametrize("data", [{"path": "a.jsonl", "dataset": "x"}, {"format": "alpaca"}])
def test_data_needs_exactly_one_of_path_or_dataset(data):
    message = _error(_raw(stages=[_stage(0, data=data)]))
    assert message.startswith("invalid config\n  stages.sft1.data: give exactly one of `path` (a file, directory or "
                              "hub id) or `dataset` (names in dataset_info.json)")


def test_data_by_dataset_name_and_as_a_list():
    config = load_config(_raw(stages=[_stage(0, data=[{"dataset": "a,b", "dataset_dir": "d"}, "c.jsonl"])]))
    first, second = config.stage("sft1").data
    assert (first.dataset, first.dataset_dir, first.path) == ("a,b", "d", None)
    assert (second.path, second.dataset) == ("c.jsonl", None)


def test_stages_are_typed():
    config = load_config(_raw())
    assert all(isinstance(s, SFTStage) for s in config.stages)
    assert config.stage("sft2").model == "sft1"
    assert config.stage("sft2").data[0].path == "b.jsonl"
    with pytest.raises(ConfigError, match=r"no stage named 'sfx1'; stages: sft1, sft2; did you mean 'sft1'\?"):
        config.stage("sfx1")


def test_missing_required_fields():
    message = _error({"stages": [{"type": "sft", "data": "a.jsonl"}]})
    lines = message.splitlines()[1:]
    assert "  stages.0.name: missing (required)" in lines
    assert "  name: missing (required)" in lines
    assert "  model: missing (required)" in lines


# ---- single-stage files ------------------------------------------------------------------------------------------

def test_single_stage_file_is_a_pipeline_of_one(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("model: m\ntype: sft\ndata: d.jsonl\nseed: 3\ntrainer: {learning_rate: 1e-5, max_steps: 3}\n")
    config = load_config(path, ["stages.sft.trainer.max_steps=2"])
    assert (config.name, config.model, config.seed, config.output_dir) == ("sft", "m", 3, "runs/sft")
    assert [s.name for s in config.stages] == ["sft"]
    stage = config.stages[0]
    assert isinstance(stage, SFTStage)
    assert stage.trainer == {"learning_rate": 1e-5, "max_steps": 2}
    assert stage.data[0].path == "d.jsonl"


def test_single_stage_file_keeps_its_names():
    config = load_config({"name": "mine", "model": "m", "type": "sft", "data": "d.jsonl", "finetuning": "lora"})
    assert config.name == "mine"
    assert config.stages[0].name == "sft"
    assert config.stages[0].finetuning == "lora"


def test_single_stage_file_unknown_key_is_named():
    message = _error({"model": "m", "type": "sft", "data": "d.jsonl", "trainr": {}})
    assert "stages.sft: unknown key 'trainr'; did you mean 'trainer'?" in message


def test_single_stage_file_override_by_its_own_keys():
    config = load_config({"model": "m", "type": "sft", "data": "d.jsonl", "trainer": {"max_steps": 3}},
                         ["trainer.max_steps=2"])
    assert config.stages[0].trainer == {"max_steps": 2}


# ---- files ---------------------------------------------------------------------------------------------------------

def test_invalid_yaml_gives_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel: m\nstages:\n  - name: a\n    type: sft\n   data: x\n")
    message = _error(path)
    assert message.startswith(f"{path}:6: invalid YAML: ")
    assert "\n" not in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert _error(path) == f"{path}: expected a mapping at the top level"


def test_missing_config_file(tmp_path):
    assert _error(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such config file"


def test_several_problems_listed_at_once(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nmodel: m\nmodle: x\nstages:\n"
        "  - {name: sft1, type: sft, data: a.jsonl, lerning: 1}\n"
        "  - {name: sft2, type: sft, data: {path: b.jsonl, fromat: openai}}\n"
        "  - {name: sft3, type: sft, data: c.jsonl, lora: {rr: 1}}\n"
        "  - {name: sft4, type: sft, data: d.jsonl, trainer: {learning_rat: 1}}\n"

    )
    lines = _error(path).splitlines()
    assert lines[0] == f"{path}: invalid config"
    for expected in [
        "  stages.sft1: unknown key 'lerning'; did you mean 'finetuning'?",
        "  stages.sft4.trainer: unknown key 'learning_rat' for SFTConfig; did you mean 'learning_rate'?",
        "  stages.sft2.data: unknown key 'fromat'; did you mean 'format'?",
        "  stages.sft3.lora: unknown key 'rr'; did you mean 'r'?",
        "  (top level): unknown key 'modle'; did you mean 'model'?",
    ]:
        assert expected in lines
    assert len(lines) == len(set(lines))  # no line twice


def test_every_problem_in_one_mapping_is_listed():
    message = _error({"name": "p", "model": "m", "modle": "x", "nmae": "y",
                      "stages": [{"name": "a", "type": "sft", "data": "x", "lerning": 1, "finetuning": "lra"}]})
    lines = message.splitlines()
    assert "  (top level): unknown key 'modle'; did you mean 'model'?" in lines
    assert "  (top level): unknown key 'nmae'; did you mean 'name'?" in lines
    assert "  stages.a: unknown key 'lerning'; did you mean 'finetuning'?" in lines
    assert "  stages.a.finetuning: Input should be 'full', 'lora', 'qlora', 'freeze' or 'oft'" in lines


def test_unknown_stage_type_listed_with_another_stages_error():
    lines = _error(_raw(stages=[_stage(0, lerning=1), {"name": "sft5", "type": "sfft"}])).splitlines()
    assert "  stages.sft1: unknown key 'lerning'; did you mean 'finetuning'?" in lines
    from posttrain.stages import STAGES as STAGE_CONFIGS

    assert f"  stages.sft5.type: unknown stage type 'sfft'; known: {', '.join(STAGE_CONFIGS)}; did you mean 'sft'?" in lines


@pytest.mark.parametrize("override, expected", [
    ("stages.sft1.trainer.learning_rate=abc", "stages.sft1.trainer: learning_rate: expected float, got 'abc'"),
    ("stages.sft1.trainer.per_device_train_batch_size=2.5",
     "stages.sft1.trainer: per_device_train_batch_size: expected int, got 2.5"),
    ("stages.sft1.trainer.max_length=abc", "stages.sft1.trainer: max_length: expected int | None, got 'abc'"),
])
def test_trainer_values_are_type_checked(override, expected):
    assert expected in _error(_raw(), [override])


def test_llamafactory_recipe_takes_its_own_keys_as_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\nstage: sft\nfinetuning_type: full\ndataset: a\noutput_dir: out\n")
    config = load_config(recipe, ["max_steps=2", "cutoff_len=64", "model=other"])
    assert config.model == "other"
    assert config.stage("sft").trainer["max_steps"] == 2 and config.stage("sft").trainer["max_length"] == 64


def test_an_override_appends_to_a_list_with_plus_equals():
    from posttrain.config import apply_override

    raw = {"compat": {"ignore": ["a"]}}
    apply_override(raw, "compat.ignore+=b")
    apply_override(raw, "compat.ignore+=[c, d]")
    apply_override(raw, "other.list+=x")
    assert raw == {"compat": {"ignore": ["a", "b", "c", "d"]}, "other": {"list": ["x"]}}
    stages = {"stages": [{"name": "s", "trainer": {"report_to": ["none"]}}]}
    apply_override(stages, "stages.s.trainer.report_to+=wandb")  # through a list item, as = goes
    assert stages["stages"][0]["trainer"]["report_to"] == ["none", "wandb"]
    with pytest.raises(ConfigError, match=r"override compat\+=: compat is not a list"):
        apply_override(raw, "compat+=x")


def test_a_stage_type_that_is_no_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"stages.s.type: unknown stage type \['sft'\]; known: sft, .*simpo$"):
        load_config({"name": "x", "model": "m", "stages": [{"name": "s", "type": ["sft"], "data": "d.jsonl"}]})
