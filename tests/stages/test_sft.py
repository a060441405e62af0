"""The SFT stage: loss falls, packed and unpacked both train, outputs load, eval metrics land."""

from __future__ import annotations

import json

import pytest
import torch

from posttrain.pipeline import run
from tests.conftest import make_chats, write_jsonl


def config(tmp_path, tiny_model, **trainer):
    data = write_jsonl(tmp_path / "train.jsonl", make_chats(64, seed=4, max_words=12))
    held = write_jsonl(tmp_path / "eval.jsonl", make_chats(8, seed=5, max_words=12))
    return {"name": "s", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "sft", "type": "sft", "data": str(data), "eval_data": str(held),
                        "trainer": {"max_length": 128, "per_device_train_batch_size": 4, "learning_rate": 5e-3,
                                    "logging_steps": 1, "report_to": "none", **trainer}}]}


def losses(run_dir):
    lines = [json.loads(line) for line in (run_dir / "sft" / "trainer_log.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


@pytest.mark.parametrize("packing", [True, False])
def test_loss_falls_and_model_loads(tmp_path, tiny_model, packing):
    from transformers import AutoModelForCausalLM

    run_dir = run(config(tmp_path, tiny_model, max_steps=30, packing=packing))
    curve = losses(run_dir)
    assert all(torch.isfinite(torch.tensor(curve)))
    assert sum(curve[-5:]) / 5 < 0.8 * sum(curve[:5]) / 5, curve
    metrics = json.loads((run_dir / "sft" / "metrics.json").read_text())
    assert metrics["eval_loss"] < curve[0]
    assert metrics["train_examples"] == 64 and metrics["eval_examples"] == 8
    model = AutoModelForCausalLM.from_pretrained(run_dir / "sft" / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)


def test_lora_output_is_an_adapter_peft_loads(tmp_path, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = config(tmp_path, tiny_model, max_steps=5)
    cfg["stages"][0].update(finetuning="lora", lora={"r": 4, "alpha": 8, "target_modules": "q_proj,v_proj"})
    run_dir = run(cfg)
    adapter = run_dir / "sft" / "model"
    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert settings["r"] == 4 and settings["lora_alpha"] == 8
    assert set(settings["target_modules"]) == {"q_proj", "v_proj"}
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)


def test_val_size_holds_out_records(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model, max_steps=2)
    del cfg["stages"][0]["eval_data"]
    cfg["stages"][0]["val_size"] = 0.25
    run_dir = run(cfg)
    metrics = json.loads((run_dir / "sft" / "metrics.json").read_text())
    assert (metrics["train_examples"], metrics["eval_examples"]) == (48, 16)
    assert "eval_loss" in metrics


def test_bf16_pipeline_trains_on_a_cpu(tmp_path, tiny_model):
    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine bf16 is native; this checks the CPU-only path")
    cfg = config(tmp_path, tiny_model, max_steps=2)
    cfg["dtype"] = "bf16"
    run_dir = run(cfg)
    assert (run_dir / "sft" / "model" / "model.safetensors").exists()


def test_tool_calls_train_as_given_with_their_tool_list(tiny_model):
    """Two calls with different argument names: each keeps its own (Arrow would merge them into one struct and
    give each call the other's names as nulls), and the tool list is in the text the model trains on."""
    from transformers import AutoTokenizer

    from posttrain.data.records import validate_conversation
    from posttrain.stages.sft import tokenized

    def call(name, arguments):
        return {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": name, "arguments": arguments}}]}

    tools = [{"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object"}}]
    records = [validate_conversation({"tools": tools, "messages": [
        {"role": "user", "content": "Weather in Oslo?"}, call("get_weather", {"city": "Oslo"}),
        {"role": "tool", "content": "Sunny"}, {"role": "assistant", "content": "Sunny in Oslo."}]}),
        validate_conversation({"messages": [
            {"role": "user", "content": "Add 2 and 3."}, call("add", {"a": 2, "b": 3}),
            {"role": "tool", "content": "5"}, {"role": "assistant", "content": "5."}]})]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    dataset = tokenized(tokenizer, records, 1024, True, False, "tools")
    first, second = (tokenizer.decode(row["input_ids"]) for row in dataset)
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"}}' in first and "null" not in first + second
    assert '"description": "Weather in a city"' in first and "<tools>" not in second
    assert '{"name": "add", "arguments": {"a": 2, "b": 3}}' in second
    learned = tokenizer.decode([t for t in dataset[1]["labels"] if t != -100])
    assert '"add"' in learned and "5." in learned and "Add 2 and 3" not in learned


def _trainer_and_batch(tmp_path, tiny_model, **settings):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from posttrain.data.records import validate_conversation
    from posttrain.stages.sft import ExactSFTTrainer, tokenized
    from posttrain.training.packing import ExactPackingCollator

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    records = [validate_conversation(chat) for chat in make_chats(12, seed=6, max_words=20)]
    dataset = tokenized(tokenizer, records, 96, True, True, "chats")  # assistant-only labels, packed rows
    collator = ExactPackingCollator(pad_token_id=tokenizer.pad_token_id)
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, packing=False,
                     dataset_kwargs={"skip_prepare_dataset": True}, **settings)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    trainer = ExactSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                              data_collator=collator)
    return trainer, collator([dataset[i] for i in range(min(4, len(dataset)))])


@pytest.mark.parametrize("bf16", [False, True])
def test_the_full_logits_loss_is_trls_fused_loss_with_the_same_metrics(tmp_path, tiny_model, monkeypatch, bf16):
    """Below the size rule the trainer scores the model's own logits; above it, TRL's chunked head. Same loss,
    gradient, entropy and token accuracy, in fp32 and under bf16 autocast (each with its tolerance)."""
    from posttrain.training import full_logits

    trainer, batch = _trainer_and_batch(tmp_path, tiny_model, bf16=bf16)
    model = trainer.model.train()
    results = []
    for limit in (full_logits.FULL_LOGITS_LIMIT, 0):  # the own logits, then TRL's head
        monkeypatch.setattr(full_logits, "FULL_LOGITS_LIMIT", limit)
        trainer._metrics["train"].clear()
        model.zero_grad()
        with trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(37))
        loss.backward()
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if k != "num_tokens"}
        results.append((loss.item(), model.model.layers[0].mlp.up_proj.weight.grad.clone(), metrics,
                        trainer._metrics["train"]["num_tokens"]))
    (own, own_grad, own_metrics, own_tokens), (fused, fused_grad, fused_metrics, fused_tokens) = results
    tolerance = 2e-2 if bf16 else 1e-5
    assert own == pytest.approx(fused, rel=tolerance)
    assert set(own_metrics) == set(fused_metrics) == {"entropy", "mean_token_accuracy"}
    for name in own_metrics:
        assert own_metrics[name] == pytest.approx(fused_metrics[name], rel=tolerance, abs=tolerance), name
    torch.testing.assert_close(own_grad, fused_grad, rtol=tolerance * 5, atol=tolerance * 1e-2)
    assert own_tokens[0] * 2 == fused_tokens[0] == 2 * int(batch["num_real_tokens"])  # counted once per call


def test_the_size_rule_keeps_trls_head_for_large_logits():
    from posttrain.training.full_logits import FULL_LOGITS_LIMIT, fits

    assert fits(torch.zeros(4, 216, dtype=torch.long), 2_450)  # the SFT bench's batch: full logits
    assert not fits(torch.zeros(4, 1024, dtype=torch.long), 151_936)  # a Qwen vocabulary at 4 x 1024: fused
    assert fits(torch.zeros(1, FULL_LOGITS_LIMIT // 1000, dtype=torch.long), 1000)


@pytest.mark.parametrize(("dtype", "native", "trainer", "expected"), [
    ("auto", True, {}, True),  # a CPU with bf16 arithmetic: autocast over fp32 weights
    ("auto", False, {}, False),  # emulated bf16 would be slower than fp32
    ("fp32", True, {}, False),  # asked for fp32
    ("auto", True, {"bf16": False}, False),  # the trainer block decides
])
def test_sft_autocasts_to_bf16_on_a_cpu_only_where_it_has_bf16(tmp_path, tiny_model, monkeypatch, dtype, native,
                                                                trainer, expected):
    from posttrain import machine
    from posttrain.config.load import from_dict
    from posttrain.stages import sft

    monkeypatch.setattr(machine, "cuda", lambda: False)
    monkeypatch.setattr(machine, "cpu_bf16_native", lambda: native)
    cfg = config(tmp_path, tiny_model, **trainer)
    cfg["dtype"] = dtype
    pipeline = from_dict(cfg)
    args = sft.plan(pipeline.stages[0], pipeline, tmp_path / "out").args
    assert args.bf16 is expected and (args.use_cpu or not expected)
