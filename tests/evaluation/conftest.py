"""Fixtures of the evaluation tests: a LoRA adapter on the talkative model (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lora_adapter(tmp_path_factory, talkative_model):
    """A LoRA adapter with random (non-zero) weights on the talkative model, saved as a LoRA stage saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(talkative_model)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.mul_(5)  # big enough to change greedy answers
    out = tmp_path_factory.mktemp("adapter") / "model"
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(talkative_model).save_pretrained(out)
    return out
