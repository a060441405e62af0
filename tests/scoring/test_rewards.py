"""A reward model as a GRPO reward: TRL's call shape, the logged name, the scores of `posttrain score`."""

import pytest

from posttrain.config import RewardSpec, load_config
from posttrain.errors import ConfigError
from posttrain.pipeline import reward_models, stage_fingerprint
from posttrain.scoring import load_scorer
from posttrain.scoring.rewards import model_reward

PROMPT = [{"role": "user", "content": "What is BP?"}]


def test_scores_prompt_plus_completion_as_the_scorer_does(reward_model):
    reward = model_reward(RewardSpec(model=str(reward_model)), str(reward_model))
    assert reward.__name__ == f"rm_{reward_model.parent.name}"  # the stage folder, not `model`
    completions = [[{"role": "assistant", "content": "Blood pressure."}], [{"role": "assistant", "content": "No."}]]
    scores = reward(prompts=[PROMPT, PROMPT], completions=completions, ground_truth_json=["null", "null"])
    scorer = load_scorer(reward_model)
    assert scores == pytest.approx([scorer.score(PROMPT, "Blood pressure."), scorer.score(PROMPT, "No.")], abs=1e-5)


def test_name_and_model_are_exclusive():
    with pytest.raises(ValueError, match="exactly one of `name`"):
        RewardSpec(name="answer_tags", model="rm")
    with pytest.raises(ValueError, match="exactly one of `name`"):
        RewardSpec(weight=2.0)


def pipeline(tmp_path, rm_first=True):
    rm = {"name": "rm", "type": "reward_model", "data": str(tmp_path / "p.jsonl")}
    grpo = {"name": "rl", "type": "grpo", "data": str(tmp_path / "rl.jsonl"), "rewards": [{"model": "rm"}]}
    return load_config({"name": "x", "model": str(tmp_path), "output_dir": str(tmp_path / "run"),
                        "stages": [rm, grpo] if rm_first else [grpo, rm]})


def test_a_retrained_reward_model_changes_the_policy_stage_fingerprint(tmp_path):
    for name in ("p.jsonl", "rl.jsonl"):
        (tmp_path / name).write_text("")
    config = pipeline(tmp_path)
    grpo = config.stage("rl")
    first = stage_fingerprint(grpo, config, "m", reward_models(grpo, config, {"rm": "run-1"}))
    again = stage_fingerprint(grpo, config, "m", reward_models(grpo, config, {"rm": "run-1"}))
    other = stage_fingerprint(grpo, config, "m", reward_models(grpo, config, {"rm": "run-2"}))
    assert first == again != other


def test_a_later_reward_model_stage_is_refused(tmp_path):
    config = pipeline(tmp_path, rm_first=False)
    with pytest.raises(ConfigError, match="reward model 'rm' is a later stage"):
        reward_models(config.stage("rl"), config, {})


def test_validate_lists_a_reward_model_that_is_not_there_or_comes_later(tmp_path):
    from posttrain.pipeline.validate import validate

    for name in ("p.jsonl", "rl.jsonl"):
        (tmp_path / name).write_text("")
    rm = {"name": "rm", "type": "reward_model", "data": str(tmp_path / "p.jsonl")}
    grpo = {"name": "rl", "type": "grpo", "data": str(tmp_path / "rl.jsonl"),
            "rewards": [{"model": "rm"}, {"model": str(tmp_path / "nowhere")}]}
    config = {"name": "x", "model": str(tmp_path), "output_dir": str(tmp_path / "run"), "stages": [grpo, rm]}
    problems = validate(config).problems
    assert any(p.startswith("stages.rl.rewards.0.model: 'rm' is not an earlier stage") for p in problems), problems
    assert any(p.startswith("stages.rl.rewards.1.model:") and "no config.json" in p for p in problems), problems


def test_a_process_reward_model_scores_the_completions_steps(tmp_path, tiny_model):
    from tests.scoring.test_process import make_prm

    prm = make_prm(tmp_path, tiny_model)
    spec = RewardSpec(model=str(prm), aggregate="product", step_separator=";")
    reward = model_reward(spec, str(prm))
    completions = [[{"role": "assistant", "content": "2 + 3 = 5; Answer: 5"}], [{"role": "assistant", "content": " "}]]
    scores = reward(prompts=["Compute 2 + 3."] * 2, completions=completions)
    scorer = load_scorer(prm)
    assert scores[0] == pytest.approx(scorer.score("Compute 2 + 3.", "2 + 3 = 5; Answer: 5", separator=";",
                                                   aggregate="product"), abs=1e-5)
    assert scores[1] == 0.0  # no steps, no reward
