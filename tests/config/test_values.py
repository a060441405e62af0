"""A trainer block's values no run can use are refused when the file is read, each naming its key."""

from __future__ import annotations

import pytest

from posttrain.config import load_config
from posttrain.errors import ConfigError


def pipeline(trainer=None, **stage):
    return {"name": "x", "model": "m", "stages": [{"name": "s", "type": "sft", "data": "d.jsonl",
                                                   "trainer": trainer or {}, **stage}]}


def test_nan_rates_and_sizes_below_one_are_refused_by_name():
    trainer = {"learning_rate": float("nan"), "max_length": -5, "per_device_train_batch_size": 0,
               "weight_decay": float("inf"), "warmup_steps": 2, "max_steps": -1, "max_grad_norm": float("inf")}
    with pytest.raises(ConfigError) as error:
        load_config(pipeline(trainer))
    lines = str(error.value).splitlines()[1:]
    assert [line.strip() for line in lines] == [
        "stages.s.trainer.learning_rate: NaN; expected a number",
        "stages.s.trainer.max_length: -5; expected at least 1",
        "stages.s.trainer.per_device_train_batch_size: 0; expected at least 1",
        "stages.s.trainer.weight_decay: inf; expected a finite number"]


def test_what_runs_can_use_passes():
    config = load_config(pipeline({"learning_rate": 1e-5, "max_length": None, "max_steps": -1, "adam_beta1": 0.9}))
    assert config.stages[0].trainer["max_steps"] == -1


def test_posttrain_own_fields_refuse_nan():
    with pytest.raises(ConfigError, match=r"stages.s.lora.plus_lr_ratio: Input should be a finite number"):
        load_config(pipeline(finetuning="lora", lora={"plus_lr_ratio": float("nan")}))
