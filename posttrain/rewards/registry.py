"""The reward registry: name -> plain scoring function, and custom rewards by `module:function` or file path.

The built-in rewards register themselves here when posttrain.rewards (the package) imports them; everyone
else asks the package.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable

from posttrain.errors import ConfigError, closest
from posttrain.rewards.signatures import BoundReward, bind

Reward = Callable[..., "float | dict"]
REWARDS: dict[str, Reward] = {}


def register(name: str):
    """Decorator: make a function available as reward `name`."""

    def add(function: Reward) -> Reward:
        REWARDS[name] = function
        return function

    return add


def get(name: str) -> BoundReward:
    """A built-in reward by name, or a custom one as `module:function` / `path/to/file.py:function`, bound to
    posttrain's call by its parameter names (VERL's and TRL's signatures work unchanged: rewards/signatures.py)."""
    if name in REWARDS:
        return bind(REWARDS[name], name)
    if ":" in name:
        return bind(_custom(name), name)
    raise ConfigError(f"reward {name!r}: unknown; built-in rewards: {', '.join(sorted(REWARDS))}"
                      f"{closest(name, REWARDS, cutoff=0.6)} "
                      "(a custom one is module:function or path/to/file.py:function)")


def names() -> list[str]:
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
    except ConfigError:
        raise
    except Exception as e:  # the user's module: a syntax error or whatever its import raises
        raise ConfigError(f"reward {spec!r}: cannot import {where}: {type(e).__name__}: {e}") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"reward {spec!r}: {where} has no function {attr!r}")
    return function


def score_value(result) -> float:
    """The number of a reward's result (a dict carries it under `score`)."""
    return float(result["score"] if isinstance(result, dict) else result)
