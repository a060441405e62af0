"""The same reward functions behind the two entry points RL trainers call.

- `trl_reward(name)`: a TRL GRPOTrainer reward function, called with the
  completions and the dataset's columns as keyword arguments; returns floats.
- `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kw)`:
  VERL's `custom_reward_function`, dispatching on `data_source`
  (`study_search_train` -> `study_search`). When a row's `extra_info`
  carries `posttrain_rewards` (a GRPO stage's `rewards:` list of
  `{name, weight}`, written by `posttrain verl prepare`), it returns their
  weighted sum instead, as TRL sums them in a posttrain run, with each
  reward's own value beside `score` for VERL to log. VERL loads this file by
  path as a standalone module, so it imports only absolute, installed names.
"""

from __future__ import annotations

import json
import re

from posttrain.rewards.registry import get, names, score_value

_SPLIT_SUFFIX = re.compile(r"_(train|training|val|valid|validation|dev|test|eval)$")
# data sources whose reward has another name
ALIASES = {"sample_size": "sample_size_estimation", "medical_dialogue": "medical_dialogue_quality"}


def reward_for_source(data_source: str) -> str:
    base = _SPLIT_SUFFIX.sub("", str(data_source))
    base = ALIASES.get(base, base)
    if base not in names():
        raise ValueError(f"data_source {data_source!r}: no posttrain reward for {base!r}; "
                         f"rewards: {', '.join(names())}")
    return base


REWARDS_KEY = "posttrain_rewards"  # extra_info key: the stage's rewards with weights


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """VERL's entry point: the reward named by `data_source`, as a float or a dict with `score`;
    the weighted sum of the rewards listed in `extra_info["posttrain_rewards"]` when there is that list."""
    listed = extra_info.get(REWARDS_KEY) if isinstance(extra_info, dict) else None
    if listed is not None and len(listed):
        return weighted_score(listed, solution_str, ground_truth, extra_info)
    return get(reward_for_source(data_source))(solution_str, ground_truth, extra_info)


def weighted_score(rewards, solution_str, ground_truth, extra_info=None) -> dict:
    """`{"score": sum of weight * value, <reward>: value, ...}` over `[{name, weight}]`; the same keys every call."""
    if hasattr(rewards, "tolist"):  # a numpy array, as parquet readers may hand a list back
        rewards = rewards.tolist()
    result = {"score": 0.0}
    for item in rewards:
        name = item["name"] if isinstance(item, dict) else str(item)
        weight = float(item.get("weight", 1.0)) if isinstance(item, dict) else 1.0
        value = score_value(get(name)(solution_str, ground_truth, extra_info))
        label = name.rsplit(":", 1)[-1]  # what TRL logs it as
        if label in result:
            label = name if name not in result else f"{name}#{len(result)}"
        result[label] = value
        result["score"] += weight * value
    return result


def completion_text(completion) -> str:
    """TRL hands a completion as text, or as messages for conversational data: the assistant's text."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    return completion if isinstance(completion, str) else ""


def trl_reward(name: str):
    """A TRL reward function over the reward `name`; its __name__ is what TRL logs per step."""
    function = get(name)

    def reward(completions, ground_truth=None, extra_info=None, **kwargs) -> list[float]:
        # posttrain's GRPO datasets carry them as JSON text: Arrow cannot mix their shapes in one column
        if ground_truth is None and "ground_truth_json" in kwargs:
            ground_truth = [json.loads(v) for v in kwargs["ground_truth_json"]]
        if extra_info is None and "extra_info_json" in kwargs:
            extra_info = [json.loads(v) for v in kwargs["extra_info_json"]]
        n = len(completions)
        truths = ground_truth if isinstance(ground_truth, list) else [ground_truth] * n
        infos = extra_info if isinstance(extra_info, list) else [extra_info] * n
        scores = []
        for completion, truth, info in zip(completions, truths, infos):
            scores.append(score_value(function(completion_text(completion), truth, info)))
        return scores

    reward.__name__ = name.rsplit(":", 1)[-1]
    return reward
