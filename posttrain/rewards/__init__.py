"""The reward library: name -> plain scoring function.

A reward is `score(solution_str, ground_truth, extra_info=None) -> float | dict`
(DESIGN.md): the response only, never raising on any model output, bounded
in time, deterministic. The same functions are the training reward (through
the TRL and VERL adapters in `adapters.py`) and the evaluation metric.
`get` also takes a custom reward as `module:function` or `path/to/file.py:function`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from pathlib import Path
from typing import Callable

from posttrain.errors import ConfigError

Reward = Callable[..., "float | dict"]
REWARDS: dict[str, Reward] = {}


def register(name: str):
    """Decorator: make a function available as reward `name`."""

    def add(function: Reward) -> Reward:
        REWARDS[name] = function
        return function

    return add


def _load_builtins() -> None:
    # imported for their @register side effect
    from posttrain.rewards import clinical, dialogue, formatting  # noqa: F401
    from posttrain.rewards import judges  # noqa: F401


def get(name: str) -> Reward:
    """A built-in reward by name, or a custom one as `module:function` / `path/to/file.py:function`."""
    _load_builtins()
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        return _custom(name)
    close = difflib.get_close_matches(name, REWARDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"reward {name!r}: unknown; built-in rewards: {', '.join(sorted(REWARDS))}{hint} "
                      "(a custom one is module:function or path/to/file.py:function)")


def names() -> list[str]:
    _load_builtins()
    return sorted(REWARDS)


def _custom(spec: str) -> Reward:
    where, _, attr = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.exists():
                raise ConfigError(f"reward {spec!r}: {path}: no such file")
            module_spec = importlib.util.spec_from_file_location(f"posttrain_custom_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ImportError as e:
        raise ConfigError(f"reward {spec!r}: cannot import {where}: {e}") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"reward {spec!r}: {where} has no function {attr!r}")
    return function


def score_value(result) -> float:
    """The number of a reward's result (a dict carries it under `score`)."""
    return float(result["score"] if isinstance(result, dict) else result)
