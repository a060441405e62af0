"""The DPO stage: learns a learnable preference on the tiny model, logs reward accuracy and margins at each eval,
drops ties, and keeps the reference right after a LoRA SFT stage (the policy and its reference both start from
the SFT model, never the bare base)."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
from trl import DPOTrainer

from posttrain.config import load_config
from posttrain.data.records import validate_preference
from posttrain.pipeline import read_manifest, run
from posttrain.stages import StageContext, dpo
from posttrain.training.inputs import stage_tokenizer
from posttrain.training.preference import build_trainer, loss_types, pairs_dataset
from tests.conftest import make_chats, write_jsonl
from tests.stages.test_reward_model import pairs

TRAINER = {"max_steps": 12, "learning_rate": 5e-3, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
           "logging_steps": 4, "eval_strategy": "steps", "eval_steps": 6, "max_length": 128, "beta": 0.1}


def config(tmp_path, base, *, ties: int = 0, stages_before=(), **stage):
    train = pairs(48, 0) + [{"prompt": [{"role": "user", "content": "Same?"}], "chosen": "Same.",
                             "rejected": "Same!", "tie": True}] * ties
    data = write_jsonl(tmp_path / "train.jsonl", train)
    held = write_jsonl(tmp_path / "eval.jsonl", pairs(16, 1, "What do you know about"))
    return {"name": "d", "model": str(base), "output_dir": str(tmp_path / "run"),
            "stages": [*stages_before,
                       {"name": "dpo", "type": "dpo", "data": {"path": str(data), "format": "preference"},
                        "eval_data": {"path": str(held), "format": "preference"},
                        "trainer": {**TRAINER, **stage.pop("trainer", {})}, **stage}]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    tmp_path = tmp_path_factory.mktemp("dpo")
    pipeline = config(tmp_path, tiny_model, ties=2)
    held_out = pipeline["stages"][0]["eval_data"]
    pipeline["stages"].append({"name": "eval", "type": "eval", "models": ["base", "dpo"], "data": held_out,
                               "metrics": ["preference_accuracy"]})
    pipeline["stages"].append({"name": "implicit", "type": "eval", "models": ["dpo"], "data": held_out,
                               "metrics": ["implicit_reward_accuracy"]})
    return run(pipeline)


def test_learns_the_preference_and_logs_reward_accuracy_and_margins(trained):
    assert read_manifest(trained)["stages"]["dpo"]["status"] == "done"
    metrics = json.loads((trained / "dpo" / "metrics.json").read_text())
    assert metrics["eval_rewards/accuracies"] > 0.8 and metrics["eval_rewards/margins"] > 0, metrics
    assert metrics["ties_dropped"] == 2 and metrics["train_examples"] == 48 and metrics["eval_examples"] == 16
    logged = [json.loads(line) for line in (trained / "dpo" / "trainer_log.jsonl").read_text().splitlines()]
    evals = [line for line in logged if "eval_rewards/accuracies" in line]
    assert len(evals) >= 2 and all("eval_rewards/margins" in line for line in evals)
    assert AutoModelForCausalLM.from_pretrained(trained / "dpo" / "model") is not None  # a plain causal LM


def test_an_eval_stage_ranks_the_pairs_by_likelihood_and_dpo_widens_the_margin(trained):
    results = json.loads((trained / "eval" / "metrics.json").read_text())
    figures = results["figures"]
    assert figures["dpo"]["preference_accuracy"] >= figures["base"]["preference_accuracy"], figures
    assert figures["dpo"]["preference_margin"] > figures["base"]["preference_margin"] + 0.5, figures
    low, _ = results["intervals"]["dpo"]["preference_accuracy"]
    assert low > 0.5  # the interval lies above chance
    rows = [json.loads(line) for line in (trained / "eval" / "dpo" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(set(row["scores"]) == {"preference_accuracy", "preference_margin"} for row in rows)


def test_the_implicit_reward_in_an_eval_stage_is_the_one_trl_reports_on_the_same_pairs(trained, tiny_model):
    """beta * log pi/pi_ref with the stage's input model as pi_ref: TRL's eval_rewards at the last step, read again
    by the eval stage (beta = 1 there, so its margin is TRL's divided by beta)."""
    trl_figures = json.loads((trained / "dpo" / "metrics.json").read_text())
    results = json.loads((trained / "implicit" / "metrics.json").read_text())
    ours = results["figures"]["dpo"]
    assert results["models"]["dpo"]["reference"] == {"model": str(tiny_model), "adapter": None}
    assert abs(ours["implicit_reward_accuracy"] - trl_figures["eval_rewards/accuracies"]) <= 1 / 16, (ours,
                                                                                                       trl_figures)
    assert ours["implicit_reward_margin"] * TRAINER["beta"] == pytest.approx(trl_figures["eval_rewards/margins"],
                                                                            rel=0.05)


def test_implicit_reward_accuracy_of_a_model_with_no_input_is_refused(tmp_path, tiny_model):
    from posttrain.pipeline.validate import validate

    pipeline = config(tmp_path, tiny_model)
    pipeline["stages"].append({"name": "eval", "type": "eval", "models": ["base", "dpo"],
                               "data": pipeline["stages"][0]["eval_data"], "metrics": ["implicit_reward_accuracy"]})
    problems = validate(pipeline).problems
    assert any("'base' was not trained from another model here" in p for p in problems), problems


def test_the_trainer_block_reaches_dpo_config(tmp_path, tiny_model):
    pipeline = load_config(config(tmp_path, tiny_model, trainer={"loss_type": "ipo", "beta": 0.3}))
    args = dpo.plan(pipeline.stage("dpo"), pipeline, tmp_path / "out").args
    assert args.loss_type == ["ipo"] and args.beta == 0.3 and args.max_length == 128


@pytest.mark.parametrize("trainer, precomputed", [
    ({"num_train_epochs": 1}, False), ({"num_train_epochs": 2}, True),
    ({"num_train_epochs": 3, "precompute_ref_log_probs": False}, False), ({"num_train_epochs": 3}, True),
    ({"num_train_epochs": 3, "sync_ref_model": True}, False), ({"num_train_epochs": 3, "max_steps": 20}, False)])
def test_the_reference_is_precomputed_from_two_epochs_unless_told(tmp_path, tiny_model, trainer, precomputed):
    stage = config(tmp_path, tiny_model, trainer=trainer)
    stage["stages"][0]["trainer"].pop("max_steps")
    stage["stages"][0]["trainer"].update(trainer)
    pipeline = load_config(stage)
    assert dpo.plan(pipeline.stage("dpo"), pipeline, tmp_path / "out").args.precompute_ref_log_probs is precomputed


def test_an_unknown_loss_type_is_refused_naming_the_trainer_block(tmp_path, tiny_model):
    pipeline = load_config(config(tmp_path, tiny_model, trainer={"loss_type": "sigmoidd"}))
    with pytest.raises(Exception, match=r"stages\.dpo\.trainer"):
        dpo.plan(pipeline.stage("dpo"), pipeline, tmp_path / "out")


def _sequence_log_probs(model, ids):
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("finetuning", ["lora", "full"])
def test_after_a_lora_sft_stage_the_reference_is_the_sft_model(tmp_path, tiny_model, finetuning):
    chats = write_jsonl(tmp_path / "chats.jsonl", make_chats(16, seed=3))
    sft = {"name": "sft", "type": "sft", "finetuning": "lora", "data": {"path": str(chats), "format": "openai"},
           "lora": {"r": 8, "alpha": 16},
           "trainer": {"max_steps": 6, "learning_rate": 5e-2, "per_device_train_batch_size": 4, "max_length": 128}}
    pipeline = load_config(config(tmp_path, tiny_model, stages_before=[sft], model="sft", finetuning=finetuning))
    run(pipeline, only="sft")
    adapter = tmp_path / "run" / "sft" / "model"
    stage = pipeline.stage("dpo")
    ctx = StageContext(pipeline=pipeline, stage=stage, model_path=str(adapter), stage_dir=tmp_path / "run" / "dpo")
    p = dpo.plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    held_out = pairs_dataset([validate_preference(r) for r in pairs(4, 1)])
    trainer = build_trainer(DPOTrainer, ctx, p.args, tokenizer,
                            pairs_dataset([validate_preference(r) for r in pairs(4, 0)]),
                                held_out)

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    sft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter))
    sft_model = sft_model.merge_and_unload().eval()
    ids = torch.tensor([tokenizer.apply_chat_template(pairs(1, 5)[0]["prompt"], tokenize=True,
                                                      add_generation_prompt=True, return_dict=True)["input_ids"]])
    expected = _sequence_log_probs(sft_model, ids)
    assert not torch.allclose(expected, _sequence_log_probs(base.eval(), ids), atol=1e-3)  # SFT moved the model
    if finetuning == "lora":  # TRL's reference: the policy with the DPO adapter switched off
        policy = trainer.model.eval()
        with policy.disable_adapter():
            reference = _sequence_log_probs(policy, ids)
    else:
        reference = _sequence_log_probs(trainer.ref_model.eval(), ids)
    torch.testing.assert_close(reference, expected, atol=1e-4, rtol=1e-4)
    start = _sequence_log_probs(trainer.model.eval(), ids)  # the policy starts where its reference is
    torch.testing.assert_close(start, expected, atol=1e-4, rtol=1e-4)


def test_the_loss_types_are_the_ones_trl_computes():
    names = loss_types(DPOTrainer)
    assert {"sigmoid", "ipo", "hinge", "robust", "sigmoid_norm"} <= set(names) and len(names) >= 10, names

    class Logged(DPOTrainer):  # a user's subclass computes its base's losses
        pass

    assert loss_types(Logged) == names
