"""The reward library: name -> plain scoring function.

A reward is `score(solution_str, ground_truth, extra_info=None) -> float | dict`
(DESIGN.md): the response only, never raising on any model output, bounded
in time, deterministic. The same functions are the training reward (through
the TRL and VERL adapters in `adapters.py`) and the evaluation metric.
`get` also takes a custom reward as `module:function` or `path/to/file.py:function`.
"""

from __future__ import annotations

from posttrain.rewards import clinical, dialogue, formatting, judges  # noqa: F401 (each registers its rewards)
from posttrain.rewards.registry import REWARDS, Reward, get, names, register, score_value

__all__ = ["REWARDS", "Reward", "get", "names", "register", "score_value"]
