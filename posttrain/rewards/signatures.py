"""Reward functions written for VERL or TRL, called the way their authors wrote them.

A posttrain reward is `score(solution_str, ground_truth, extra_info=None)`. The functions users bring are not:
- VERL calls a `custom_reward_function` by keyword: `data_source=, solution_str=, ground_truth=, extra_info=`;
- VERL's per-task scorers take two, with the rest at their defaults
  (`gsm8k.compute_score(solution_str, ground_truth, method="strict", format_score=0.0, score=1.0)`);
- VERL's batch reward manager passes lists: `data_sources=, solution_strs=, ground_truths=, extra_infos=`;
- TRL passes lists too: `prompts=, completions=` and the dataset's columns, each as a keyword.
Calling any of them by position hands the wrong value to the wrong parameter without an error (gsm8k's `method`
receives extra_info and its assert fails at the first step). `bind` reads the function's own parameter names
once and returns a `BoundReward`, with posttrain's contract for one completion and for a batch, or refuses a
signature it cannot fill, naming the parameters.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from posttrain.errors import ConfigError

# what posttrain has for one completion, by the parameter name that asks for it
ITEM = ("solution_str", "ground_truth", "extra_info", "data_source", "prompt")
VERL_BATCH = {"data_sources": "data_source", "solution_strs": "solution_str", "ground_truths": "ground_truth",
              "extra_infos": "extra_info"}
# TRL's own keywords; a TRL reward's other parameters are dataset columns
TRL_NAMES = {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
TRL_COLUMNS = ("ground_truth", "extra_info", "data_source")


@dataclass
class BoundReward:
    """A reward function with the call posttrain makes: one completion, or a batch of them."""

    function: Callable
    form: str  # posttrain, VERL keyword, VERL per-task, VERL batch, TRL
    keywords: dict[str, str] = field(default_factory=dict)  # parameter -> what it receives
    positional: list[str] = field(default_factory=list)  # positional-only parameters' values, in order
    defaults: list[str] = field(default_factory=list)  # parameters left at their defaults
    columns: list[str] = field(default_factory=list)  # TRL: parameters read from each row's extra_info

    @property
    def __name__(self) -> str:
        return getattr(self.function, "__name__", "reward")

    @property
    def __doc__(self) -> str | None:
        return self.function.__doc__

    @property
    def batched(self) -> bool:
        return self.form in ("VERL batch", "TRL")

    def __call__(self, solution_str, ground_truth=None, extra_info=None, *, data_source=None, prompt=None):
        if self.batched:
            return self.batch([solution_str], [ground_truth], [extra_info], [data_source], [prompt])[0]
        row = {"solution_str": solution_str, "ground_truth": ground_truth, "extra_info": extra_info,
               "data_source": data_source, "prompt": prompt}
        return self.function(*[row[v] for v in self.positional], **{k: row[v] for k, v in self.keywords.items()})

    def batch(self, solution_strs, ground_truths, extra_infos, data_sources=None, prompts=None, **context) -> list:
        """One score per completion. `context` is what TRL passes beside the columns (completion_ids,
        trainer_state, ...), given to a TRL reward that names it."""
        n = len(solution_strs)
        data_sources = list(data_sources) if data_sources is not None else [None] * n
        prompts = list(prompts) if prompts is not None else [None] * n
        if self.form == "VERL batch":
            values = {"solution_str": list(solution_strs), "ground_truth": list(ground_truths),
                      "extra_info": list(extra_infos), "data_source": data_sources}
            scores = self.function(**{k: values[v] for k, v in self.keywords.items()})
        elif self.form == "TRL":
            scores = self.function(**self._trl_arguments(solution_strs, ground_truths, extra_infos, data_sources,
                                                         prompts, context))
        else:
            return [self(s, t, i, data_source=d, prompt=p)
                    for s, t, i, d, p in zip(solution_strs, ground_truths, extra_infos, data_sources, prompts)]
        scores = list(scores)
        if len(scores) != n:
            raise ValueError(f"reward {self.__name__}: returned {len(scores)} scores for {n} completions")
        return scores

    def _trl_arguments(self, completions, truths, infos, sources, prompts, context) -> dict:
        # posttrain's GRPO data is conversational, so TRL hands each completion as assistant messages
        as_messages = [c if isinstance(c, list) else [{"role": "assistant", "content": c}] for c in completions]
        values = {"completions": as_messages, "prompts": prompts, "ground_truth": list(truths),
                  "extra_info": list(infos), "data_source": sources, **context}
        arguments = {k: values[v] for k, v in self.keywords.items() if v in values}
        for name in self.columns:
            missing = [i for i, info in enumerate(infos) if not isinstance(info, dict) or name not in info]
            if missing:
                raise ValueError(f"reward {self.__name__}: parameter {name!r} is read from each row's extra_info, "
                                 f"and row {missing[0]} of this batch has no {name!r}")
            arguments[name] = [info[name] for info in infos]
        return arguments

    def describe(self) -> str:
        """Which form was detected and what each parameter receives, for validate and `rewards test`."""
        given = ", ".join([f"{p}<-{v}" for p, v in self.keywords.items()]
                          + [f"#{i + 1}<-{v}" for i, v in enumerate(self.positional)]
                          + [f"{c}<-extra_info[{c!r}]" for c in self.columns])
        rest = f"; at their defaults: {', '.join(self.defaults)}" if self.defaults else ""
        return f"{self.form} form ({given}{rest})"


def bind(function: Callable, spec: str) -> BoundReward:
    """The function, called by its own parameter names; ConfigError naming what cannot be filled."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: posttrain's positional call
        return BoundReward(function, "posttrain", positional=["solution_str", "ground_truth", "extra_info"])
    names = {p.name for p in parameters}
    if "completions" in names:
        return _bind_trl(function, spec, parameters)
    if names & set(VERL_BATCH):
        return _bind_named(function, spec, parameters, VERL_BATCH, "VERL batch")
    return _bind_item(function, spec, parameters)


def _bind_item(function, spec, parameters) -> BoundReward:
    bound = BoundReward(function, "posttrain")
    unnamed = ["solution_str", "ground_truth"]  # what the first two unnamed parameters receive
    named = {p.name for p in parameters if p.name in ITEM and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unnamed = [v for v in unnamed if v not in named]
    unfilled = []
    for position, p in enumerate(parameters):
        if p.kind == p.VAR_KEYWORD:  # VERL gives every keyword it has; so do we
            for name in ("data_source", "solution_str", "ground_truth", "extra_info"):
                if name not in named and name not in bound.keywords.values():
                    bound.keywords[name] = name
        elif p.kind == p.VAR_POSITIONAL:
            if not bound.keywords and not bound.positional:
                bound.positional = ["solution_str", "ground_truth", "extra_info"]
        elif p.name in ITEM and p.kind != p.POSITIONAL_ONLY:
            bound.keywords[p.name] = p.name
        elif position < 2 and p.default is p.empty and unnamed and p.kind != p.KEYWORD_ONLY:
            if p.kind == p.POSITIONAL_ONLY:
                bound.positional.append(unnamed.pop(0))
            else:
                bound.keywords[p.name] = unnamed.pop(0)
        elif p.default is not p.empty:
            bound.defaults.append(p.name)
        else:
            unfilled.append(p.name)
    if unfilled:
        _refuse(function, spec, unfilled, "posttrain gives solution_str, ground_truth, extra_info, data_source "
                "and prompt by name, and the completion and ground truth to the first two parameters")
    given = set(bound.keywords.values()) | set(bound.positional)
    if "solution_str" not in given:
        _refuse(function, spec, [], "no parameter receives the completion (name one solution_str)")
    if "data_source" in given:
        bound.form = "VERL keyword"
    elif "extra_info" not in given:
        bound.form = "VERL per-task"
    return bound


def _bind_named(function, spec, parameters, known: dict, form: str) -> BoundReward:
    bound = BoundReward(function, form)
    unfilled = []
    for p in parameters:
        if p.kind == p.VAR_KEYWORD:
            bound.keywords.update({k: v for k, v in known.items() if k not in bound.keywords})
        elif p.name in known and p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            bound.keywords[p.name] = known[p.name]
        elif p.default is not p.empty or p.kind == p.VAR_POSITIONAL:
            bound.defaults += [p.name] if p.kind != p.VAR_POSITIONAL else []
        else:
            unfilled.append(p.name)
    if unfilled:
        _refuse(function, spec, unfilled, f"the {form} form is called with {', '.join(known)} by name")
    return bound


def _bind_trl(function, spec, parameters) -> BoundReward:
    known = {name: name for name in (*TRL_NAMES, *TRL_COLUMNS)}
    bound = _bind_named(function, spec, [p for p in parameters if p.kind != p.VAR_KEYWORD and (
        p.name in known or p.default is not p.empty)], known, "TRL")
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        bound.keywords.update({k: k for k in ("prompts", "completions", "completion_ids", *TRL_COLUMNS,
                                              "trainer_state") if k not in bound.keywords})
    for p in parameters:
        if p.name not in known and p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            if p.kind == p.POSITIONAL_ONLY:
                _refuse(function, spec, [p.name], "TRL passes every argument by name")
            bound.columns.append(p.name)  # a dataset column in TRL; posttrain's rows carry it in extra_info
    return bound


def _refuse(function, spec, names: list[str], why: str):
    try:
        signature = str(inspect.signature(function))
    except (TypeError, ValueError):
        signature = "(...)"
    what = f"parameter(s) {', '.join(names)} get no value: " if names else ""
    raise ConfigError(f"reward {spec!r}: cannot call {getattr(function, '__name__', 'it')}{signature}: {what}{why}")
