"""posttrain/training/defaults.py: trainer settings every stage sets up the same way."""

from __future__ import annotations

import pytest

from posttrain.config import load_config
from posttrain.errors import PosttrainError


def test_model_init_kwargs_are_refused_not_dropped():
    """load_in_4bit there would be silently ignored by TRL (the stage passes it a loaded model)."""
    from trl import SFTConfig

    from posttrain.training.defaults import apply_common

    config = load_config({"name": "p", "model": "models/base", "stages": [
        {"name": "s", "type": "sft", "data": "d.jsonl", "trainer": {"model_init_kwargs": {"load_in_4bit": True}}}]})
    stage = config.stages[0]
    with pytest.raises(PosttrainError, match=r"^stages\.s\.trainer\.model_init_kwargs: posttrain loads the model "
                                             r"itself.*finetuning: qlora for a 4-bit base$"):
        apply_common(dict(stage.trainer), stage, config, SFTConfig, "stages.s.trainer")


@pytest.mark.parametrize("flag", ["bf16", "fp16", "bf16_full_eval", "fp16_full_eval"])
def test_half_precision_on_a_machine_without_cuda_trains_on_the_cpu(flag, monkeypatch):
    """transformers refuses each of these without a GPU unless use_cpu is set."""
    import torch
    from trl import SFTConfig

    from posttrain.training.defaults import apply_common

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = load_config({"name": "p", "model": "models/base", "stages": [
        {"name": "s", "type": "sft", "data": "d.jsonl", "trainer": {flag: True}}]})
    settings = dict(config.stages[0].trainer)
    apply_common(settings, config.stages[0], config, SFTConfig, "stages.s.trainer")
    assert settings["use_cpu"] is True
    SFTConfig(output_dir="/tmp/unused", **settings)  # builds: no "Your setup doesn't support bf16/gpu"
