"""Exact packing: per-example losses of a packed row equal those of the examples run alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from posttrain.data.chat import tokenize_conversation
from posttrain.models.loading import load_tokenizer
from posttrain.training.packing import ExactPackingCollator
from tests.conftest import make_chats


def per_token_loss(logits, labels):
    """Loss at each position t for predicting labels[t + 1]; NaN where ignored."""
    shifted = labels[:, 1:]
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), shifted.clamp(min=0), reduction="none")
    return loss.masked_fill(shifted == -100, float("nan"))


def examples(tokenizer, n=4):
    chats = make_chats(n, seed=3, min_words=3, max_words=40)
    return [tokenize_conversation(tokenizer, chat["messages"]) for chat in chats]


def alone_losses(model, items):
    out = []
    for item in items:
        ids = torch.tensor([item["input_ids"]])
        labels = torch.tensor([item["labels"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        loss = per_token_loss(logits, labels)[0]
        out.append(loss[~loss.isnan()].mean().item())
    return out


def packed_losses(model, items, batch):
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "num_real_tokens"}).logits
    loss = per_token_loss(logits, batch["labels"])[0]
    out, start = [], 0
    for item in items:
        n = len(item["input_ids"])
        # the position predicting the segment's first token is excluded by construction
        segment = loss[start : start + n - 1]
        out.append(segment[~segment.isnan()].mean().item())
        start += n
    return out


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_row_matches_separate_examples(tiny_model, tokenizer, attention):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation=attention)
    model.eval()
    items = examples(tokenizer)
    row = {
        "input_ids": sum((item["input_ids"] for item in items), []),
        "labels": sum((item["labels"] for item in items), []),
        "seq_lengths": [len(item["input_ids"]) for item in items],
    }
    collator = ExactPackingCollator(tokenizer.pad_token_id,
                                    mask_dtype=torch.bool if attention == "sdpa" else torch.float32)
    # a second, shorter row forces padding in the first position of the batch dimension
    batch = collator([row, {"input_ids": items[0]["input_ids"], "labels": items[0]["labels"]}])
    assert batch["attention_mask"].shape == (2, 1, len(row["input_ids"]), len(row["input_ids"]))
    assert int(batch["num_real_tokens"]) == len(row["input_ids"]) + len(items[0]["input_ids"])
    packed = packed_losses(model, items, {k: v[:1] for k, v in batch.items() if k != "num_real_tokens"})
    alone = alone_losses(model, items)
    assert max(abs(a - b) for a, b in zip(packed, alone)) < 1e-4, (packed, alone)


@pytest.mark.parametrize("attention", ["sdpa", "sdpa_fp32"])
def test_packed_row_matches_separate_examples_under_bf16_autocast(tiny_model, tokenizer, attention):
    """The SFT stage's CPU autocast (training/cpu_bf16.py), with the attention in bf16 or kept in fp32. Each side
    rounds to bf16 on its own path, so the tolerance is bf16's; without the mask the same check fails by 20x."""
    from transformers import AutoModelForCausalLM

    from posttrain.training import cpu_bf16

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa").eval()
    if attention == cpu_bf16.FP32_SDPA:
        cpu_bf16.attention_in_fp32(model)
    items = examples(tokenizer)
    row = {"input_ids": sum((i["input_ids"] for i in items), []), "labels": sum((i["labels"] for i in items), []),
           "seq_lengths": [len(i["input_ids"]) for i in items]}
    batch = ExactPackingCollator(tokenizer.pad_token_id)([row])
    unmasked = {k: v for k, v in batch.items() if k != "attention_mask"}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        packed, mixed = packed_losses(model, items, batch), packed_losses(model, items, unmasked)
        alone = alone_losses(model, items)
    gap = max(abs(a - b) for a, b in zip(packed, alone))
    control = max(abs(a - b) for a, b in zip(mixed, alone))
    assert gap < 2e-3, (packed, alone)  # measured: 3e-4 with bf16 attention, 0 with fp32 attention
    assert control > 10 * 2e-3, control  # without the mask the chats attend to each other: 0.04


def test_position_ids_alone_do_not_isolate_examples(tiny_model, tokenizer):
    """The control: what padding-free collators do on CPU (no mask) is not exact, so the test above can fail."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    items = examples(tokenizer)
    row = {"input_ids": sum((i["input_ids"] for i in items), []), "labels": sum((i["labels"] for i in items), []),
           "seq_lengths": [len(i["input_ids"]) for i in items]}
    batch = ExactPackingCollator(tokenizer.pad_token_id)([row])
    unmasked = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "labels": batch["labels"]}
    packed = packed_losses(model, items, unmasked)
    alone = alone_losses(model, items)
    assert max(abs(a - b) for a, b in zip(packed, alone)) > 1e-3


def test_first_token_of_each_example_is_not_a_target(tokenizer):
    row = {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lengths": [2, 3]}
    batch = ExactPackingCollator(tokenizer.pad_token_id)([row])
    assert batch["labels"].tolist() == [[-100, 6, -100, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2]]
    mask = batch["attention_mask"][0, 0]
    assert mask[3].tolist() == [False, False, True, True, False]
