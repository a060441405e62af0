"""A stage's deepspeed/fsdp: the shipped ZeRO files, what reaches TrainingArguments, and a clear error on a machine
that lacks what they need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.config import load_config
from posttrain.errors import ConfigError
from posttrain.training import engines
from tests.conftest import make_chats, write_jsonl


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(engines, "cuda", lambda: False)
    monkeypatch.setattr(engines, "has_package", lambda name: False)


@pytest.fixture
def gpu_with_deepspeed(monkeypatch):
    monkeypatch.setattr(engines, "cuda", lambda: True)
    monkeypatch.setattr(engines, "has_package", lambda name: name == "deepspeed")


def pipeline(tmp_path, tiny_model="models/none", **stage) -> dict:
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    return {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "sft1", "type": "sft", "data": str(data), "trainer": {"max_steps": 1}, **stage}]}


@pytest.mark.parametrize("name, stage", [("zero2", 2), ("zero3", 3)])
def test_shipped_zero_configs_leave_batch_and_precision_to_the_trainer(name, stage):
    config = json.loads((Path(engines.__file__).with_name(engines.ZERO[name])).read_text())
    assert config["zero_optimization"]["stage"] == stage
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "gradient_clipping"):
        assert config[key] == "auto"
    assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"


def test_the_configs_are_package_data():
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"training/*.json"' in text


def test_deepspeed_on_a_cpu_machine_is_a_config_error_before_anything_is_written(tmp_path, cpu_only):
    from posttrain.pipeline import run

    with pytest.raises(ConfigError, match=r"stages\.sft1\.deepspeed: DeepSpeed needs the deepspeed package .* and a "
                                          "CUDA GPU, which this machine lacks"):
        run(pipeline(tmp_path, deepspeed="zero3"))
    assert not (tmp_path / "run").exists()


def test_validate_lists_what_deepspeed_and_fsdp_lack(tmp_path, tiny_model, cpu_only):
    from posttrain.pipeline.validate import validate

    report = validate(pipeline(tmp_path, tiny_model, deepspeed="zero2"))
    assert any("DeepSpeed needs the deepspeed package" in p for p in report.problems), report.problems
    report = validate(pipeline(tmp_path, tiny_model, trainer={"max_steps": 1, "deepspeed": "ds.json"}))
    assert any("deepspeed" in p and "ds.json: no such file" in p for p in report.problems), report.problems
    report = validate(pipeline(tmp_path, tiny_model, fsdp=True))
    assert any("FSDP needs CUDA GPUs" in p for p in report.problems), report.problems


def test_zero_names_resolve_to_the_shipped_file(tmp_path, gpu_with_deepspeed):
    stage = load_config(pipeline(tmp_path, deepspeed="zero3")).stage("sft1")
    settings = {}
    engines.apply(settings, stage)
    assert settings["deepspeed"] == str(Path(engines.__file__).with_name("zero3.json"))


def test_a_missing_or_broken_deepspeed_file_is_named(tmp_path, gpu_with_deepspeed):
    stage = load_config(pipeline(tmp_path, deepspeed=str(tmp_path / "ds.json"))).stage("sft1")
    with pytest.raises(ConfigError, match="ds.json: no such file"):
        engines.apply({}, stage)
    (tmp_path / "ds.json").write_text('{"zero_optimization": ')
    with pytest.raises(ConfigError, match=r"ds.json:1: not valid JSON"):
        engines.apply({}, stage)


def test_fsdp_goes_to_training_arguments(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "cuda", lambda: True)
    cases = [(True, {"fsdp": True}),
             ({"version": 2, "reshard_after_forward": False}, {"fsdp": True, "fsdp_config": {
                 "version": 2, "reshard_after_forward": False}}),
             ("full_shard auto_wrap", {"fsdp": "full_shard auto_wrap"}),
             # the list form LLaMA-Factory recipes use, as the one string TrainingArguments' field is typed with
             (["full_shard", "auto_wrap"], {"fsdp": "full_shard auto_wrap"})]
    for value, expected in cases:
        stage = load_config(pipeline(tmp_path, fsdp=value)).stage("sft1")
        settings = {}
        engines.apply(settings, stage)
        assert settings == expected
        if isinstance(value, dict):
            assert settings["fsdp_config"] is not stage.fsdp  # TrainingArguments edits the mapping it is given


@pytest.mark.parametrize("stage, message", [
    ({"deepspeed": "zero2", "fsdp": True}, "deepspeed or fsdp, not both"),
    ({"deepspeed": "zero2", "trainer": {"deepspeed": "x.json"}}, "give it once"),
    ({"fsdp": True, "trainer": {"fsdp_config": {}}}, "give it once"),
    ({"deepspeed": "zero4"}, "expected zero2, zero3 or a DeepSpeed .json file"),
    ({"fsdp": False}, "leave it out"),
])
def test_bad_engine_fields_fail_when_the_config_loads(tmp_path, stage, message):
    with pytest.raises(ConfigError, match=message):
        load_config(pipeline(tmp_path, **stage))


def test_the_trainer_block_takes_fsdp_s_list_form_too(tmp_path):
    stage = load_config(pipeline(tmp_path, trainer={"fsdp": ["full_shard", "auto_wrap"]})).stage("sft1")
    assert stage.trainer["fsdp"] == "full_shard auto_wrap"
    with pytest.raises(ConfigError, match=r"fsdp: expected str \| None, got \[1\]"):
        load_config(pipeline(tmp_path, trainer={"fsdp": [1]}))


def test_eval_and_export_stages_have_no_engine(tmp_path):
    config = pipeline(tmp_path)
    config["stages"].append({"name": "x", "type": "export", "model": "sft1", "deepspeed": "zero2"})
    with pytest.raises(ConfigError, match="unknown key 'deepspeed'"):
        load_config(config)


@pytest.mark.parametrize("field, value", [("deepspeed", "ds.json"), ("fsdp", "fsdp.json")])
def test_the_fingerprint_covers_what_a_named_engine_file_says(tmp_path, field, value):
    """ZeRO-2 edited to ZeRO-3 is another training, with checkpoints of another format: not skipped, not resumed."""
    from posttrain.pipeline import stage_fingerprint

    path = tmp_path / value
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    config = load_config(pipeline(tmp_path, **{field: str(path)}))
    before = stage_fingerprint(config.stages[0], config, "model")
    assert stage_fingerprint(config.stages[0], config, "model") == before
    path.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    assert stage_fingerprint(config.stages[0], config, "model") != before
    shipped = load_config(pipeline(tmp_path, deepspeed="zero3"))
    assert engines.user_file(shipped.stages[0]) is None  # posttrain's own: its name is its content


def test_a_sharded_checkpoint_resumes_only_on_as_many_processes_as_wrote_it(tmp_path, tiny_model,
                                                                             gpu_with_deepspeed):
    from posttrain.data.io import write_json
    from posttrain.pipeline import input_model, run, stage_fingerprint

    config = load_config(pipeline(tmp_path, tiny_model, deepspeed="zero3"))
    stage = config.stages[0]
    fingerprint = stage_fingerprint(stage, config, input_model(stage, config, {})[1])
    (tmp_path / "run" / "sft1" / "checkpoints" / "checkpoint-20").mkdir(parents=True)
    write_json(tmp_path / "run" / "manifest.json", {"stages": {"sft1": {
        "status": "running", "fingerprint": fingerprint, "launch": {"processes": 8}}}})
    with pytest.raises(ConfigError, match=r"^stage sft1: its DeepSpeed checkpoints were written by 8 processes and "
                                          r"resume only on 8 .* this run has 2\. Fix: run it with 8 processes, or "
                                          r"--force"):
        run(config, launch={"nproc": 2})
