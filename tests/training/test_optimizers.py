"""LoRA+ (lora.plus_lr_ratio): the stage trains with peft's LoRA+ optimizer, the B matrices at ratio times the
learning rate, the rest of the optimizer as `trainer:` would have made it. Muon (optimizer: muon): torch's Muon
on the hidden matrices and AdamW on the rest, one optimizer whose checkpoint resumes. Both refused where they
cannot apply."""

from __future__ import annotations

import pytest
from trl import SFTTrainer

from posttrain.config import load_config
from posttrain.errors import ConfigError
from posttrain.pipeline import run
from tests.conftest import make_chats, write_jsonl


def sft(tmp_path, tiny_model, **stage):
    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(8, seed=2))
    return {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "sft", "type": "sft", "data": {"path": str(chats), "format": "openai"},
                        "trainer": {"max_steps": 2, "learning_rate": 1e-3, "weight_decay": 0.01,
                                    "per_device_train_batch_size": 4, "max_length": 128}, **stage}]}


def test_the_b_matrices_learn_ratio_times_faster(tmp_path, tiny_model, monkeypatch):
    seen = {}
    original = SFTTrainer.train

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen["groups"] = [(group["lr"], group["weight_decay"], len(group["params"]))
                          for group in self.optimizer.param_groups]
        seen["initial"] = [group["initial_lr"] for group in self.optimizer.param_groups]
        seen["class"] = type(getattr(self.optimizer, "optimizer", self.optimizer)).__name__  # accelerate wraps it
        return out

    monkeypatch.setattr(SFTTrainer, "train", spy)
    run(sft(tmp_path, tiny_model, finetuning="lora", lora={"r": 4, "plus_lr_ratio": 16}))
    assert "AdamW" in seen["class"], seen
    # peft's groups: A, adapters on embeddings (none here), B, B without decay (none here)
    assert seen["initial"] == [pytest.approx(1e-3), pytest.approx(1e-6), pytest.approx(1.6e-2),
                               pytest.approx(1.6e-2)], seen
    (_, decay_a, count_a), _, (_, decay_b, count_b), _ = seen["groups"]
    assert count_a == count_b > 0 and decay_a == decay_b == 0.01, seen


def test_muon_trains_the_hidden_matrices_and_adamw_the_rest(tmp_path, tiny_model, monkeypatch):
    import torch

    from posttrain.training.optimizers import MuonWithAdamW

    seen = {}
    original = SFTTrainer.train

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        names = {id(p): n for n, p in self.model.named_parameters()}
        seen["kinds"] = {type(inner).__name__: [names[id(p)] for g in inner.param_groups for p in g["params"]]
                         for inner in optimizer.inner}
        seen["optimizer"] = optimizer
        return out

    monkeypatch.setattr(SFTTrainer, "train", spy)
    pipeline = sft(tmp_path, tiny_model, optimizer="muon")
    pipeline["stages"][0]["trainer"].update(save_steps=1, max_steps=2)
    run(pipeline)
    muon, adamw = seen["kinds"]["Muon"], seen["kinds"]["AdamW"]
    assert muon and all(".layers." in name and name.endswith("weight") for name in muon), muon
    assert any("embed_tokens" in name for name in adamw) and any("norm" in name for name in adamw), adamw
    # the checkpoint holds both states, and loading it gives the groups the schedule steps back to both
    optimizer = seen["optimizer"]
    assert isinstance(optimizer, MuonWithAdamW)
    state = torch.load(tmp_path / "run" / "sft" / "checkpoints" / "checkpoint-2" / "optimizer.pt", weights_only=False)
    assert len(state["inner"]) == 2 and all(inner["state"] for inner in state["inner"])
    optimizer.load_state_dict(state)
    assert optimizer.param_groups == [g for inner in optimizer.inner for g in inner.param_groups]
    assert all(a is b for a, b in zip(optimizer.param_groups, [g for o in optimizer.inner for g in o.param_groups]))


@pytest.mark.parametrize("stage, words", [
    ({"optimizer": "muon", "finetuning": "lora", "lora": {"plus_lr_ratio": 16}},
     ["optimizer: muon and lora.plus_lr_ratio each build the optimizer"]),
    ({"optimizer": "muon", "trainer": {"optim": "adafactor"}}, ["trainer.optim names another"]),
    ({"finetuning": "full", "lora": {"plus_lr_ratio": 16}}, ["lora.plus_lr_ratio", "finetuning is full"]),
    ({"finetuning": "lora", "lora": {"plus_lr_ratio": 0.5}}, ["plus_lr_ratio", "greater than or equal to 1"]),
])
def test_lora_plus_where_it_cannot_apply_is_refused(tmp_path, tiny_model, stage, words):
    with pytest.raises(ConfigError) as info:
        load_config(sft(tmp_path, tiny_model, **stage))
    assert all(word in str(info.value) for word in words), info.value


@pytest.mark.parametrize("optim, scale", [("galore_adamw", 0.25), ("apollo_adamw", 1.0)])
def test_galore_and_apollo_project_the_target_modules(tmp_path, tiny_model, monkeypatch, optim, scale):
    """LLaMA-Factory's use_galore/use_apollo become transformers' optim with its targets and optim_args; here the
    stage really trains with them: the linear layers' group carries the projection rank, the rest is plain."""
    pytest.importorskip("galore_torch" if optim.startswith("galore") else "apollo_torch")
    seen = {}
    original = SFTTrainer.train

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        seen["module"] = type(optimizer).__module__
        seen["groups"] = [(group.get("rank"), group.get("scale"), len(group["params"]))
                          for group in optimizer.param_groups]
        return out

    monkeypatch.setattr(SFTTrainer, "train", spy)
    run(sft(tmp_path, tiny_model, trainer={"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 128,
                                           "optim": optim, "optim_target_modules": "all-linear",
                                           "optim_args": "rank=4"}))
    assert seen["module"].startswith(optim.split("_")[0]), seen  # galore_torch's / apollo_torch's own AdamW
    (plain_rank, _, plain), (rank, projected_scale, projected) = seen["groups"]
    assert plain_rank is None and rank == 4 and projected_scale == scale and plain > 0 and projected > 0, seen
