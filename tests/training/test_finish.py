"""posttrain/training/finish.py: resuming a stage stopped after its last checkpoint."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from posttrain.errors import PosttrainError
from posttrain.training.finish import train_and_save


def test_a_sharded_final_checkpoint_is_a_message_not_a_crash_in_save_model(tmp_path):
    """DeepSpeed/FSDP load their state only inside train(): saving the model from outside it fails in transformers."""
    checkpoint = tmp_path / "checkpoints" / "checkpoint-40"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 40, "max_steps": 40}))
    loaded = []
    trainer = SimpleNamespace(args=SimpleNamespace(should_save=True), is_deepspeed_enabled=True,
                              _load_from_checkpoint=loaded.append)
    ctx = SimpleNamespace(checkpoints_dir=tmp_path / "checkpoints", stage=SimpleNamespace(name="sft"))
    with pytest.raises(PosttrainError, match=r"^stage sft: it was stopped after its last checkpoint .*--force"):
        train_and_save(trainer, ctx, tokenizer=None, resume=str(checkpoint))
    assert loaded == []
