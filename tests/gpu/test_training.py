"""The GPU-only paths, trained for a few steps on a real CUDA GPU: QLoRA SFT, bf16, attention selection (sdpa,
eager, flash-attention 2), Liger kernels, gradient checkpointing, GRPO with vLLM colocated. Marked gpu, so
tests/conftest.py skips them where torch.cuda.is_available() is false; a missing optional package skips its test."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.training.test_requirements import stage_problems
from posttrain.config import load_config
from posttrain.pipeline import run
from tests.conftest import make_chats, write_jsonl

pytestmark = pytest.mark.gpu


def ampere_or_newer():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("needs compute capability 8.0 or newer")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, chat_corpus):
    """The 2 M-parameter model: head size 32, which flash-attention and vLLM's kernels take."""
    from posttrain.models.tiny import init_model

    return init_model(tmp_path_factory.mktemp("gpu-models") / "small", [chat_corpus], size="small", seed=0)


def sft(tmp_path, model, top=None, stage=None, **trainer):
    data = write_jsonl(tmp_path / "train.jsonl", make_chats(64, seed=4, max_words=12))
    config = {"name": "g", "model": str(model), "output_dir": str(tmp_path / "run"), **(top or {}),
              "stages": [{"name": "sft", "type": "sft", "data": str(data), **(stage or {}),
                          "trainer": {"max_length": 128, "per_device_train_batch_size": 4, "learning_rate": 5e-3,
                                      "logging_steps": 1, "max_steps": 4, **trainer}}]}
    loaded = load_config(config)
    assert stage_problems(loaded.stages[0], loaded) == []  # this machine can run what the test asks
    return config


def losses(run_dir, stage="sft"):
    rows = [json.loads(line) for line in (run_dir / stage / "trainer_log.jsonl").read_text().splitlines()]
    found = [row["loss"] for row in rows if "loss" in row]
    assert found and all(math.isfinite(x) for x in found), found
    return found


def test_qlora_sft_trains_adapters_on_a_4bit_base(tmp_path, small_model):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    from posttrain.models.loading import load_model

    quantized = load_model(str(small_model), quantize_4bit=True)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in quantized.modules())
    run_dir = run(sft(tmp_path, small_model, stage={"finetuning": "qlora", "lora": {"r": 8}}))
    losses(run_dir)
    assert (run_dir / "sft" / "model" / "adapter_config.json").exists()


def test_bf16_trains_and_saves_bf16_weights(tmp_path, small_model):
    ampere_or_newer()
    from transformers import AutoModelForCausalLM

    run_dir = run(sft(tmp_path, small_model, top={"dtype": "bf16"}, bf16=True, tf32=True))
    losses(run_dir)
    saved = AutoModelForCausalLM.from_pretrained(run_dir / "sft" / "model", dtype="auto")
    assert saved.dtype == torch.bfloat16


@pytest.mark.parametrize("attention", ["sdpa", "eager", "flash_attention_2"])
def test_the_attention_asked_for_is_the_one_trained_with(tmp_path, small_model, attention):
    ampere_or_newer()  # bf16, which flash-attention computes in
    if attention == "flash_attention_2":
        pytest.importorskip("flash_attn")
    from posttrain.models.loading import load_model

    model = load_model(str(small_model), dtype="bf16", attn_implementation=attention)
    assert model.config._attn_implementation == attention
    # packed rows: flash-attention isolates examples by position_ids (varlen), the others by a 4-D mask
    losses(run(sft(tmp_path, small_model, top={"dtype": "bf16", "attn_implementation": attention})))


def recording(monkeypatch, module, name):
    """Wrap `module.name` so each call is recorded (with its keyword arguments) and still made."""
    calls, original = [], getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_liger_kernel_sft(tmp_path, small_model, monkeypatch):
    pytest.importorskip("liger_kernel")
    import transformers.trainer

    applied = recording(monkeypatch, transformers.trainer, "apply_liger_kernel")
    losses(run(sft(tmp_path, small_model, use_liger_kernel=True)))
    assert len(applied) == 1, "the trainer did not apply Liger's kernels"


def test_gradient_checkpointing_gives_the_same_first_loss(tmp_path, small_model, monkeypatch):
    import transformers.modeling_utils as modeling_utils

    plain = losses(run(sft(tmp_path / "plain", small_model, max_steps=1)))
    checkpoints = recording(monkeypatch, modeling_utils, "checkpoint")
    checkpointed = losses(run(sft(tmp_path / "checkpointed", small_model, max_steps=1, gradient_checkpointing=True)))
    assert checkpoints, "no layer was checkpointed"
    assert checkpointed[0] == pytest.approx(plain[0], rel=1e-3)  # recomputing activations changes no number


def test_grpo_with_vllm_colocated_trains(tmp_path, small_model, monkeypatch):
    pytest.importorskip("vllm")
    import trl.generation.vllm_generation as vllm_generation

    engines = recording(monkeypatch, vllm_generation, "LLM")
    rows = [{"prompt": [{"role": "user", "content": f"A trial has 2 arms of {10 * (i + 1)}. Total?"}],
             "data_source": "sample_size_estimation", "ground_truth": {"target": 20 * (i + 1)}, "extra_info": {}}
            for i in range(8)]
    data = write_jsonl(tmp_path / "rl.jsonl", rows)
    config = {"name": "g", "model": str(small_model), "output_dir": str(tmp_path / "run"),
              "stages": [{"name": "rl", "type": "grpo", "data": {"path": str(data), "format": "rl_prompt"},
                          "rewards": ["sample_size_estimation"],
                          "trainer": {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.2,
                                      "vllm_max_model_length": 512, "max_steps": 2, "per_device_train_batch_size": 4,
                                      "num_generations": 4, "max_completion_length": 16, "logging_steps": 1}}]}
    run_dir = run(config)
    rows = [json.loads(line) for line in (run_dir / "rl" / "trainer_log.jsonl").read_text().splitlines()]
    assert any("rewards/sample_size_estimation/mean" in row for row in rows)
    assert len(engines) == 1 and engines[0]["gpu_memory_utilization"] == 0.2, "the rollouts did not use vLLM"
    assert (run_dir / "rl" / "model" / "model.safetensors").exists()
