"""A trained reward model as a GRPO reward: `rewards: [{model: <stage or dir>, weight: w}]`.

TRL calls a reward function with the prompts and completions of a
generation round; this one scores each prompt + completion with the reward
model (a Bradley-Terry model in batches; a process reward model step by
step, its step scores aggregated as the spec says) and is logged under the
spec's label, e.g. rewards/rm_<stage>/mean.
"""

from __future__ import annotations

from posttrain.rewards.adapters import completion_text
from posttrain.scoring import load_scorer, model_kind


def model_reward(spec, path: str, template: str | None = None):
    """The TRL reward function scoring with the reward model at `path` (the spec's `model`, resolved)."""
    kind = model_kind(path)
    scorer = load_scorer(path, template=template)

    def reward(prompts, completions, **kwargs) -> list[float]:
        prompts = [_messages(p) for p in prompts]
        texts = [completion_text(c) for c in completions]
        if kind == "bradley_terry":
            return scorer.score_many(list(zip(prompts, texts)))
        return scorer.score_many(list(zip(prompts, texts)), separator=spec.step_separator, aggregate=spec.aggregate)

    reward.__name__ = spec.label
    return reward


def _messages(prompt) -> list[dict]:
    """TRL hands conversational prompts as messages; a plain-text prompt is one user turn."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
