"""The ORPO stage: learns a learnable preference on the tiny model with no reference, logs what ORPOTrainer logs at
each eval, drops ties, widens the eval stage's preference margin, and its loss is the paper's: the chosen answer's
NLL minus λ·log σ of the log odds ratio, with λ the trainer block's `beta`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from posttrain.config import load_config
from posttrain.data.records import validate_preference
from posttrain.pipeline import read_manifest, run
from posttrain.stages import StageContext, orpo
from posttrain.training.inputs import stage_tokenizer
from posttrain.training.preference import build_trainer, pairs_dataset
from tests.conftest import write_jsonl
from tests.stages.test_dpo import config
from tests.stages.test_reward_model import pairs

BETA = 0.25  # not ORPOConfig's default (0.1), so a lost `beta` shows


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    tmp_path = tmp_path_factory.mktemp("orpo")
    pipeline = config(tmp_path, tiny_model, ties=2, name="orpo", type="orpo", trainer={"beta": BETA})
    held_out = pipeline["stages"][0]["eval_data"]
    pipeline["stages"].append({"name": "eval", "type": "eval", "models": ["base", "orpo"], "data": held_out,
                               "metrics": ["preference_accuracy"]})
    return run(pipeline)


def test_learns_the_preference_and_logs_what_orpo_logs(trained):
    assert read_manifest(trained)["stages"]["orpo"]["status"] == "done"
    metrics = json.loads((trained / "orpo" / "metrics.json").read_text())
    assert metrics["eval_rewards/accuracies"] > 0.8 and metrics["eval_rewards/margins"] > 0, metrics
    # ORPOTrainer's reward is λ·(mean log-prob): the margin is λ times the log-prob gap, so λ reached the trainer
    gap = metrics["eval_logps/chosen"] - metrics["eval_logps/rejected"]
    assert metrics["eval_rewards/margins"] == pytest.approx(BETA * gap, rel=1e-4)
    assert metrics["ties_dropped"] == 2 and metrics["train_examples"] == 48 and metrics["eval_examples"] == 16
    logged = [json.loads(line) for line in (trained / "orpo" / "trainer_log.jsonl").read_text().splitlines()]
    evals = [line for line in logged if "eval_rewards/accuracies" in line]
    assert len(evals) >= 2 and all({"eval_log_odds_ratio", "eval_nll_loss"} <= set(line) for line in evals)
    # the odds of the chosen answer over the rejected one's grow as it trains, and the chosen answer's NLL falls
    assert evals[-1]["eval_log_odds_chosen"] > evals[0]["eval_log_odds_chosen"] > 0, evals
    assert evals[-1]["eval_nll_loss"] < evals[0]["eval_nll_loss"], evals
    assert AutoModelForCausalLM.from_pretrained(trained / "orpo" / "model") is not None  # a plain causal LM


def test_an_eval_stage_ranks_the_pairs_by_likelihood_and_orpo_widens_the_margin(trained):
    results = json.loads((trained / "eval" / "metrics.json").read_text())
    figures = results["figures"]
    assert figures["orpo"]["preference_accuracy"] >= figures["base"]["preference_accuracy"], figures
    assert figures["orpo"]["preference_margin"] > figures["base"]["preference_margin"] + 0.5, figures
    low, _ = results["intervals"]["orpo"]["preference_accuracy"]
    assert low > 0.5  # the interval lies above chance


def test_the_trainer_block_reaches_orpo_config(tmp_path, tiny_model):
    from trl.experimental.orpo import ORPOConfig

    pipeline = load_config(config(tmp_path, tiny_model, name="orpo", type="orpo",
                                  trainer={"beta": 0.3, "max_length": 64}))
    args = orpo.plan(pipeline.stage("orpo"), pipeline, tmp_path / "out").args
    assert isinstance(args, ORPOConfig) and args.beta == 0.3 and args.max_length == 64
    assert args.gradient_checkpointing is False and args.report_to == [] and args.remove_unused_columns is False


def test_pairs_without_a_prompt_are_refused_naming_the_stage(tmp_path, tiny_model):
    pipeline = config(tmp_path, tiny_model, name="orpo", type="orpo")
    write_jsonl(tmp_path / "train.jsonl", pairs(4, 0) + [{"chosen": "Yes.", "rejected": "No."}])
    with pytest.raises(Exception, match=r"stage orpo data: 1 pair\(s\) have no prompt"):
        run(pipeline)


def untrained(tmp_path, model, module, trainer_class, **trainer):
    """`trainer_class` as stage `module`'s run builds it on `model` (the stage's plan, no reference), untrained."""
    pipeline = load_config(config(tmp_path, model, name="s", type=module.__name__.rsplit(".", 1)[-1],
                                  trainer=trainer))
    stage = pipeline.stage("s")
    ctx = StageContext(pipeline=pipeline, stage=stage, model_path=str(model), stage_dir=tmp_path / "run" / "s")
    args = module.plan(stage, pipeline, ctx.checkpoints_dir).args
    train, held_out = ([validate_preference(r) for r in pairs(6, seed)] for seed in (0, 1))
    return build_trainer(trainer_class, ctx, args, stage_tokenizer(ctx), pairs_dataset(train), pairs_dataset(held_out),
                         reference=False)


def a_batch(trainer, n: int = 6) -> dict:
    """The first `n` training pairs as the trainer's collator pads them (prompt labels -100)."""
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


def log_probs(model, ids, mask):
    """Each next token's log-probability, and where it is a real token (not padding)."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1), mask[:, 1:].bool()


def answer_log_probs(model, batch, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log π(y|x), |y|) of each pair's `side` answer, written out from the model's logits."""
    token, _ = log_probs(model, batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"])
    answer = batch[f"{side}_labels"][:, 1:] != -100
    return (token * answer).sum(-1), answer.sum(-1)


@pytest.fixture(scope="module")
def orpo_trainer(tmp_path_factory, tiny_model):
    from trl.experimental.orpo import ORPOTrainer

    return untrained(tmp_path_factory.mktemp("orpo-loss"), tiny_model, orpo, ORPOTrainer, beta=0.3)


def paper_odds_term(chosen_mean, rejected_mean, lam):
    """λ·log σ(log(odds_c/odds_r)), odds = p/(1−p) with p = exp(mean log-prob): Hong et al. 2024, eqs. 4–7."""
    p_c, p_r = chosen_mean.exp(), rejected_mean.exp()
    return lam * F.logsigmoid(torch.log(p_c / (1 - p_c)) - torch.log(p_r / (1 - p_r)))


def test_the_odds_ratio_term_is_the_papers_on_known_log_probabilities(orpo_trainer):
    chosen = torch.tensor([-0.2, -1.5, -3.0, -0.9])  # mean per-token log-probabilities
    rejected = torch.tensor([-0.6, -0.4, -3.5, -2.2])
    losses, chosen_rewards, rejected_rewards, _, log_odds = orpo_trainer.odds_ratio_loss(chosen, rejected)
    torch.testing.assert_close(losses, paper_odds_term(chosen, rejected, 0.3))
    torch.testing.assert_close(chosen_rewards - rejected_rewards, 0.3 * (chosen - rejected))
    assert not torch.allclose(losses, paper_odds_term(chosen, rejected, 0.1))  # λ is the block's, not the default


def test_the_loss_of_a_batch_is_the_nll_minus_lambda_times_the_odds_term(orpo_trainer):
    batch = a_batch(orpo_trainer)
    model = orpo_trainer.model.eval()
    with torch.no_grad():
        loss, metrics = orpo_trainer.get_batch_loss_metrics(model, batch, train_eval="eval")
    chosen_sum, chosen_len = answer_log_probs(model, batch, "chosen")
    rejected_sum, rejected_len = answer_log_probs(model, batch, "rejected")
    # the NLL is over the whole chosen conversation, prompt included, one mean over the batch's tokens: what TRL
    # and the paper's code compute (TRL PR #1516; a change to the answer alone was reverted in #2527)
    token, real = log_probs(model, batch["chosen_input_ids"], batch["chosen_attention_mask"])
    nll = -(token * real).sum() / real.sum()
    odds = paper_odds_term(chosen_sum / chosen_len, rejected_sum / rejected_len, 0.3)
    expected = nll - odds.mean()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert metrics["eval_nll_loss"] == pytest.approx(nll.item(), rel=1e-4)
    answer_nll = -chosen_sum.sum() / chosen_len.sum()  # the paper's formula read literally: the answer only
    assert not torch.allclose(loss, answer_nll - odds.mean(), rtol=1e-3)
