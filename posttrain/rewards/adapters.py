"""The same reward functions behind the two entry points RL trainers call.

- `trl_reward(name)`: a TRL GRPOTrainer reward function, called with the
  completions and the dataset's columns as keyword arguments; returns floats.
- `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kw)`:
  VERL's `custom_reward_function`, dispatching on `data_source`
  (`study_search_train` -> `study_search`), or on the user's
  `reward_kwargs.rewards` mapping, or to VERL's `default_compute_score`
  for VERL's own data sources (`openai/gsm8k`) when VERL is installed;
  `compute_score_batch` is the same for `reward_manager=batch`. When a row's `extra_info`
  carries `posttrain_rewards` (a GRPO stage's `rewards:` list of
  `{name, weight}`, written by `posttrain verl prepare`), it returns their
  weighted sum instead, as TRL sums them in a posttrain run, with each
  reward's own value beside `score` for VERL to log. VERL loads this file by
  path as a standalone module, so it imports only absolute, installed names.
"""

from __future__ import annotations

import functools
import json
import re

from posttrain.rewards.registry import get, names, score_value
from posttrain.rewards.signatures import TRL_NAMES

_SPLIT_SUFFIX = re.compile(r"_(train|training|val|valid|validation|dev|test|eval)$")
# data sources whose reward has another name
ALIASES = {"sample_size": "sample_size_estimation", "medical_dialogue": "medical_dialogue_quality"}


def reward_for_source(data_source: str, rewards: dict | None = None) -> str:
    """The reward a data source names: the user's mapping first (`{data_source: reward}`), then posttrain's
    reward of that name, split suffix and alias aside (`study_search_train` -> `study_search`)."""
    if isinstance(rewards, str):  # a Hydra override hands the mapping over as JSON text
        rewards = json.loads(rewards)
    if rewards and str(data_source) in rewards:
        return str(rewards[str(data_source)])
    base = _SPLIT_SUFFIX.sub("", str(data_source))
    base = ALIASES.get(base, base)
    if base not in names():
        raise ValueError(f"data_source {data_source!r}: no posttrain reward for {base!r}; "
                         f"rewards: {', '.join(names())}; or map it to one "
                         "(custom_reward_function.reward_kwargs.rewards={data_source: reward})")
    return base


REWARDS_KEY = "posttrain_rewards"  # extra_info key: the stage's rewards with weights


@functools.lru_cache(maxsize=None)
def bound(name: str):
    """`get(name)` once per process: VERL calls compute_score per completion, and a custom reward is a file."""
    return get(name)


def compute_score(data_source, solution_str, ground_truth, extra_info=None, rewards=None, **kwargs):
    """VERL's entry point: the reward `data_source` names (or `rewards` maps it to), as a float or a dict with
    `score`; the weighted sum of the rewards in `extra_info["posttrain_rewards"]` when there is that list; VERL's
    own `default_compute_score` for a data source posttrain has no reward for, when VERL is installed."""
    listed = extra_info.get(REWARDS_KEY) if isinstance(extra_info, dict) else None
    if listed is not None and len(listed):
        return weighted_score(listed, solution_str, ground_truth, extra_info, data_source)
    try:
        name = reward_for_source(data_source, rewards)
    except ValueError:
        verl_score = _verl_default()
        if verl_score is None:
            raise
        return verl_score(data_source, solution_str, ground_truth, extra_info, **kwargs)
    return bound(name)(solution_str, ground_truth, extra_info, data_source=data_source)


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, rewards=None, **kwargs) -> list:
    """VERL's `reward_manager=batch` entry point: one score per completion, each reward called once per batch
    with its own completions (a batched reward sees them all at once)."""
    n = len(solution_strs)
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    scores: list = [None] * n
    groups: dict[str, list[int]] = {}
    for i, (source, info) in enumerate(zip(data_sources, infos)):
        listed = info.get(REWARDS_KEY) if isinstance(info, dict) else None
        try:
            name = None if listed is not None and len(listed) else reward_for_source(source, rewards)
        except ValueError:
            if _verl_default() is None:
                raise
            name = None
        if name is None:
            scores[i] = compute_score(source, solution_strs[i], ground_truths[i], info, rewards, **kwargs)
        else:
            groups.setdefault(name, []).append(i)
    for name, rows in groups.items():
        got = bound(name).batch([solution_strs[i] for i in rows], [ground_truths[i] for i in rows],
                                [infos[i] for i in rows], [data_sources[i] for i in rows])
        for i, score in zip(rows, got):
            scores[i] = score
    return scores


def _verl_default():
    try:
        from verl.utils.reward_score import default_compute_score
    except ImportError:
        return None
    return default_compute_score


def weighted_score(rewards, solution_str, ground_truth, extra_info=None, data_source=None) -> dict:
    """`{"score": sum of weight * value, <reward>: value, ...}` over `[{name, weight}]`; the same keys every call."""
    if hasattr(rewards, "tolist"):  # a numpy array, as parquet readers may hand a list back
        rewards = rewards.tolist()
    result = {"score": 0.0}
    for item in rewards:
        name = item["name"] if isinstance(item, dict) else str(item)
        weight = float(item.get("weight", 1.0)) if isinstance(item, dict) else 1.0
        value = score_value(bound(name)(solution_str, ground_truth, extra_info, data_source=data_source))
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

    def reward(completions, ground_truth=None, extra_info=None, data_source=None, prompts=None, **kwargs) -> list:
        # posttrain's GRPO datasets carry them as JSON text: Arrow cannot mix their shapes in one column
        if ground_truth is None and "ground_truth_json" in kwargs:
            ground_truth = [json.loads(v) for v in kwargs["ground_truth_json"]]
        if extra_info is None and "extra_info_json" in kwargs:
            extra_info = [json.loads(v) for v in kwargs["extra_info_json"]]
        n = len(completions)
        truths = ground_truth if isinstance(ground_truth, list) else [ground_truth] * n
        infos = extra_info if isinstance(extra_info, list) else [extra_info] * n
        sources = data_source if isinstance(data_source, list) else [data_source] * n
        texts = completions if function.form == "TRL" else [completion_text(c) for c in completions]
        context = {k: v for k, v in kwargs.items() if k in TRL_NAMES}
        scores = function.batch(texts, truths, infos, sources, prompts, **context)
        return [None if s is None else score_value(s) for s in scores]  # None: TRL's "not this reward's row"

    reward.__name__ = name.rsplit(":", 1)[-1]
    return reward
