"""Reward functions in the signatures VERL's and TRL's docs describe, each scoring `#### <number>` answers."""

import re


def _answer(text):
    found = re.findall(r"#### (\-?[0-9.,]+)", text or "")
    return found[-1].replace(",", "") if found else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None):
    """VERL's docs: custom_reward_function, called by keyword."""
    assert data_source == "openai/gsm8k", data_source
    assert isinstance(extra_info, dict), extra_info
    return 1.0 if _answer(solution_str) == ground_truth else 0.0


def math_shape(solution_str, ground_truth) -> float:
    """VERL's math_reward.compute_score: two parameters, a \\boxed{} answer."""
    found = re.findall(r"\\boxed\{([^{}]*)\}", solution_str)
    return 1.0 if found and found[-1].strip() == str(ground_truth) else 0.0


def prime_shape(model_output: str, ground_truth: str) -> bool:
    """VERL's prime_math.compute_score: the completion under another name."""
    return _answer(model_output) == ground_truth


def kwargs_shape(solution_str, ground_truth, **kwargs):
    """A VERL reward that takes what it is given: data_source and extra_info arrive in kwargs."""
    return {"score": float(_answer(solution_str) == ground_truth), "had_source": float("data_source" in kwargs)}


def batch_shape(data_sources, solution_strs, ground_truths, extra_infos, **kwargs):
    """VERL's reward_manager=batch: lists in, one score per completion out."""
    return [float(_answer(s) == t) for s, t in zip(solution_strs, ground_truths)]


def trl_shape(completions, ground_truth, **kwargs):
    """TRL's reward function: conversational completions and the dataset's columns, batched."""
    return [float(_answer(c[0]["content"]) == t) for c, t in zip(completions, ground_truth)]


def trl_column(completions, answer, **kwargs):
    """TRL's reward reading a dataset column of its own (`answer`), which posttrain rows carry in extra_info."""
    return [float(a.endswith(_answer(c[0]["content"]) or "?")) for c, a in zip(completions, answer)]


def needs_mode(solution_str, ground_truth, mode):
    """No call can fill `mode`."""
    return 0.0


def keyword_only(solution_str, *, strictness):
    """No call can fill `strictness`."""
    return 0.0
