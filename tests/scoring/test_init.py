"""load_scorer tells a Bradley-Terry model from a process reward model by its architecture, and says what it
expected of anything else."""

import json

import pytest

from posttrain.errors import PosttrainError
from posttrain.scoring import model_kind


def model_dir(tmp_path, architectures):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": architectures}))
    return tmp_path


def test_kinds_by_architecture(tmp_path):
    assert model_kind(model_dir(tmp_path, ["Qwen2ForSequenceClassification"])) == "bradley_terry"
    assert model_kind(model_dir(tmp_path, ["LlamaForTokenClassification"])) == "process"


def test_an_adapter_by_its_task_type(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"task_type": "SEQ_CLS"}))
    assert model_kind(tmp_path) == "bradley_terry"


def test_a_causal_lm_is_not_a_reward_model(tiny_model):
    with pytest.raises(PosttrainError, match=r"Qwen2ForCausalLM.*expected a reward model"):
        model_kind(tiny_model)


def test_no_model_there(tmp_path):
    with pytest.raises(PosttrainError, match="no config.json"):
        model_kind(tmp_path)
