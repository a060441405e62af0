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


def test_a_pissa_adapter_is_saved_for_the_base_every_later_stage_loads(tmp_path, tiny_model, monkeypatch):
    """PiSSA moves part of each base weight into the adapter: saved as trained, the adapter is right only on a base
    nobody keeps. Saved converted, the unchanged base plus the adapter is the model that trained."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from posttrain.pipeline import run
    from tests.conftest import make_chats, write_jsonl

    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    trained = {}
    original = SFTTrainer.train

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        # without the bf16 autocast accelerate wraps the forward in, on a CPU that has bf16 (sft.plan)
        model = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False).eval()
        with torch.no_grad():
            trained["logits"] = model(input_ids=ids).logits
        return out

    monkeypatch.setattr(SFTTrainer, "train", spy)
    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(8, seed=3))
    run_dir = run({"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
                   "stages": [{"name": "sft", "type": "sft", "data": {"path": str(chats), "format": "openai"},
                               "finetuning": "lora", "lora": {"r": 4, "init": "pissa_niter_2"},
                               "trainer": {"max_steps": 3, "learning_rate": 5e-2, "per_device_train_batch_size": 4,
                                           "max_length": 128}}]})
    adapter = run_dir / "sft" / "model"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True, config  # a plain LoRA adapter, rank doubled
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        untrained = base(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(base, str(adapter)).eval()(input_ids=ids).logits
    assert not torch.allclose(untrained, trained["logits"], atol=1e-3)  # it learned something
    torch.testing.assert_close(loaded, trained["logits"], atol=1e-4, rtol=1e-4)
