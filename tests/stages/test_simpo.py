"""The SimPO stage: CPOTrainer with loss_type simpo and no NLL term learns a learnable preference on the tiny model
with no reference, logs reward accuracy and margins at each eval, widens the eval stage's preference margin, refuses
CPO's other losses, and its loss is the paper's: −log σ(β/|y_w|·log π(y_w) − β/|y_l|·log π(y_l) − γ)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from posttrain.config import load_config
from posttrain.errors import PosttrainError
from posttrain.pipeline import read_manifest, run
from posttrain.stages import simpo
from tests.stages.test_dpo import config
from tests.stages.test_orpo import a_batch, answer_log_probs, untrained


def simpo_config(tmp_path, model, *, ties: int = 0, **trainer):
    """test_dpo's pipeline with a simpo stage; β is posttrain's SimPO default unless `trainer` sets it."""
    pipeline = config(tmp_path, model, ties=ties, name="simpo", type="simpo", trainer=trainer)
    if "beta" not in trainer:
        del pipeline["stages"][0]["trainer"]["beta"]  # test_dpo's β of 0.1 is DPO's
    return pipeline


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    tmp_path = tmp_path_factory.mktemp("simpo")
    pipeline = simpo_config(tmp_path, tiny_model, ties=2)
    held_out = pipeline["stages"][0]["eval_data"]
    pipeline["stages"].append({"name": "eval", "type": "eval", "models": ["base", "simpo"], "data": held_out,
                               "metrics": ["preference_accuracy"]})
    return run(pipeline)


def test_learns_the_preference_and_logs_reward_accuracy_and_margins(trained):
    assert read_manifest(trained)["stages"]["simpo"]["status"] == "done"
    metrics = json.loads((trained / "simpo" / "metrics.json").read_text())
    assert metrics["eval_rewards/accuracies"] > 0.8 and metrics["eval_rewards/margins"] > 0, metrics
    # the reward is β·(mean log-prob): the margin is β times the log-prob gap, β posttrain's 2.0 (TRL's is 0.1)
    gap = metrics["eval_logps/chosen"] - metrics["eval_logps/rejected"]
    assert metrics["eval_rewards/margins"] == pytest.approx(2.0 * gap, rel=1e-4)
    assert metrics["eval_nll_loss"] == 0  # cpo_alpha 0: no NLL term (CPOConfig's default 1.0 would add one)
    assert metrics["ties_dropped"] == 2 and metrics["train_examples"] == 48 and metrics["eval_examples"] == 16
    logged = [json.loads(line) for line in (trained / "simpo" / "trainer_log.jsonl").read_text().splitlines()]
    evals = [line for line in logged if "eval_rewards/accuracies" in line]
    assert len(evals) >= 2 and all("eval_rewards/margins" in line for line in evals)
    assert evals[-1]["eval_rewards/margins"] > evals[0]["eval_rewards/margins"], evals
    assert AutoModelForCausalLM.from_pretrained(trained / "simpo" / "model") is not None  # a plain causal LM


def test_an_eval_stage_ranks_the_pairs_by_likelihood_and_simpo_widens_the_margin(trained):
    results = json.loads((trained / "eval" / "metrics.json").read_text())
    figures = results["figures"]
    assert figures["simpo"]["preference_accuracy"] >= figures["base"]["preference_accuracy"], figures
    assert figures["simpo"]["preference_margin"] > figures["base"]["preference_margin"] + 0.5, figures
    low, _ = results["intervals"]["simpo"]["preference_accuracy"]
    assert low > 0.5  # the interval lies above chance


def test_posttrains_simpo_defaults_and_the_trainer_block_reach_cpo_config(tmp_path, tiny_model):
    from trl.experimental.cpo import CPOConfig

    pipeline = load_config(simpo_config(tmp_path, tiny_model))
    args = simpo.plan(pipeline.stage("simpo"), pipeline, tmp_path / "out").args
    assert isinstance(args, CPOConfig)
    assert (args.loss_type, args.cpo_alpha, args.beta, args.simpo_gamma) == ("simpo", 0.0, 2.0, 1.0)
    pipeline = load_config(simpo_config(tmp_path, tiny_model, loss_type="simpo", beta=1.5, simpo_gamma=0.7,
                                        cpo_alpha=0.5, max_length=64))
    args = simpo.plan(pipeline.stage("simpo"), pipeline, tmp_path / "out").args
    assert (args.loss_type, args.cpo_alpha, args.beta, args.simpo_gamma) == ("simpo", 0.5, 1.5, 0.7)
    assert args.max_length == 64 and args.gradient_checkpointing is False


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "alphapo"])
def test_cpos_other_losses_are_refused_naming_the_trainer_block(tmp_path, tiny_model, loss_type):
    pipeline = load_config(simpo_config(tmp_path, tiny_model, loss_type=loss_type))
    with pytest.raises(PosttrainError, match=rf"stages\.simpo\.trainer\.loss_type: '{loss_type}'.*use type: dpo"):
        simpo.plan(pipeline.stage("simpo"), pipeline, tmp_path / "out")


BETA, GAMMA = 1.5, 0.7  # not CPOConfig's defaults (0.1, 0.5) nor posttrain's (2.0, 1.0)


@pytest.fixture(scope="module")
def simpo_trainer(tmp_path_factory, tiny_model):
    from trl.experimental.cpo import CPOTrainer

    return untrained(tmp_path_factory.mktemp("simpo-loss"), tiny_model, simpo, CPOTrainer, beta=BETA,
                     simpo_gamma=GAMMA)


def paper_loss(chosen_sum, chosen_len, rejected_sum, rejected_len, beta=BETA, gamma=GAMMA):
    """SimPO's loss per pair (Meng et al. 2024, eq. 6): −log σ(β/|y_w|·log π(y_w|x) − β/|y_l|·log π(y_l|x) − γ)."""
    return -F.logsigmoid(beta / chosen_len * chosen_sum - beta / rejected_len * rejected_sum - gamma)


def test_the_loss_is_the_papers_on_known_log_probabilities(simpo_trainer):
    chosen_sum, chosen_len = torch.tensor([-3.0, -12.0, -1.0]), torch.tensor([6.0, 10.0, 2.0])
    rejected_sum, rejected_len = torch.tensor([-2.0, -4.0, -9.0]), torch.tensor([2.0, 8.0, 3.0])
    # CPOTrainer is handed the length-normalised log-probabilities for simpo (average_log_prob)
    losses, chosen_rewards, _ = simpo_trainer.cpo_loss(chosen_sum / chosen_len, rejected_sum / rejected_len)
    torch.testing.assert_close(losses, paper_loss(chosen_sum, chosen_len, rejected_sum, rejected_len))
    torch.testing.assert_close(chosen_rewards, BETA * chosen_sum / chosen_len)
    assert not torch.allclose(losses, paper_loss(chosen_sum, chosen_len, rejected_sum, rejected_len, gamma=0.5))


def test_the_loss_of_a_batch_is_the_papers_with_no_nll_term(simpo_trainer):
    batch = a_batch(simpo_trainer)
    model = simpo_trainer.model.eval()
    with torch.no_grad():
        loss, metrics = simpo_trainer.get_batch_loss_metrics(model, batch, train_eval="eval")
    chosen_sum, chosen_len = answer_log_probs(model, batch, "chosen")
    rejected_sum, rejected_len = answer_log_probs(model, batch, "rejected")
    assert not torch.equal(chosen_len, rejected_len)  # so a lost length normalisation would show
    torch.testing.assert_close(loss, paper_loss(chosen_sum, chosen_len, rejected_sum, rejected_len).mean(),
                               rtol=1e-4, atol=1e-5)
    unnormalised = -F.logsigmoid(BETA * chosen_sum - BETA * rejected_sum - GAMMA).mean()
    assert not torch.allclose(loss, unnormalised, rtol=1e-3)
    assert metrics["eval_nll_loss"] == 0
