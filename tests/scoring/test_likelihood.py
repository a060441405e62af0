"""Response log-probabilities: the response's tokens only, the same in a batch as alone, and the sum of the
per-token log-probabilities a plain forward pass gives."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from posttrain.models.loading import load_tokenizer
from posttrain.scoring.likelihood import response_ids, response_log_probs

PROMPT = [{"role": "user", "content": "What is a placebo?"}]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model):
    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), load_tokenizer(str(tiny_model))


def test_the_response_starts_after_the_generation_prompt(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    ids, start = response_ids(tokenizer, PROMPT, "A dummy pill.")
    head = tokenizer.apply_chat_template(PROMPT, tokenize=True, add_generation_prompt=True, return_dict=True)
    assert ids[:start] == list(head["input_ids"]) and 0 < start < len(ids)
    assert "dummy pill" in tokenizer.decode(ids[start:])


def test_sums_the_response_tokens_and_a_batch_changes_nothing(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    items = [(PROMPT, "A dummy pill."), (PROMPT, "It is an inactive treatment given to a control group."),
             ([], "No prompt at all.")]
    batched = response_log_probs(model, tokenizer, items, batch_size=3)
    alone = [response_log_probs(model, tokenizer, [item], batch_size=1)[0] for item in items]
    for (total, count), (total_alone, count_alone), (prompt, answer) in zip(batched, alone, items):
        ids, start = response_ids(tokenizer, prompt, answer)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        expected = sum(torch.log_softmax(logits[i - 1], -1)[ids[i]].item() for i in range(max(start, 1), len(ids)))
        assert count == count_alone == len(ids) - max(start, 1)
        assert math.isclose(total, expected, rel_tol=1e-4) and math.isclose(total, total_alone, rel_tol=1e-4)
