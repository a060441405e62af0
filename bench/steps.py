"""What the step-time benchmarks share (grpo_step_time.py, dpo_step_time.py): the step timer, the interleaved
runs, the best-of-repeats figure and the config switches posttrain sets.

A step is one optimizer step's start to the next one's; each run's first step is a warm-up and left out. Runs
are interleaved, one of each side per repeat with the order rotating, and since every run does the same work at
step j (same seed, same samples), a side's figure is, for each step, its fastest time over the repeats, then the
median over the steps: a burst of other processes' work slows some runs' steps, rarely all of them.
"""

from __future__ import annotations

import math
import os
import statistics
import time

from machine import cpu_seconds
from transformers import TrainerCallback

# TrainingArguments fields that name where a run writes, not how it trains
WHERE = {"output_dir", "logging_dir", "run_name"}


class StepTimer(TrainerCallback):
    """Start time of every optimizer step, the logs the trainer writes, and the CPU other processes took."""

    def __init__(self):
        self.begins: list[float] = []
        self.logs: list[dict] = []

    def on_train_begin(self, *args, **kwargs):
        self.began_train = cpu_seconds()

    def on_step_begin(self, *args, **kwargs):
        self.begins.append(time.perf_counter())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.logs.append(dict(logs))

    def on_train_end(self, *args, **kwargs):
        (w0, m0, o0), (w1, m1, o1) = self.began_train, cpu_seconds()
        self.end, self.train_seconds = w1, w1 - w0
        self.others = max(0.0, ((m1 - m0) - (o1 - o0)) / ((w1 - w0) * os.cpu_count()))

    def steps(self) -> list[float]:
        """Each step's time but the first's (the last one lasts to the end of training, so logging counts too)."""
        marks = self.begins + [self.end]
        return [b - a for a, b in zip(marks, marks[1:])][1:]


def weights_moved(before: dict, after: dict) -> float:
    """The largest absolute change of any weight."""
    return max((after[k].float() - v.float()).abs().max().item() for k, v in before.items() if k in after)


def switches(posttrain_args, trl_defaults) -> dict:
    """The config fields posttrain's stage set differently from TRL's defaults for the same trainer block."""
    ours, theirs = posttrain_args.to_dict(), trl_defaults.to_dict()
    return {k: v for k, v in ours.items() if k not in WHERE and theirs.get(k) != v}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def best(side: list[dict], field=lambda run, j: run["steps"][j]) -> float:
    """`field` of step j (default its time) at its best over a side's runs, then the median over the steps."""
    per_run = [[field(run, j) for j in range(len(run["steps"]))] for run in side]
    return median([min(times) for times in zip(*per_run)])


def interleaved(sides: dict, repeats: int, describe) -> dict[str, list[dict]]:
    """Run each side `repeats` times, one of each per repeat, rotating who goes first; print `describe(run)`."""
    runs: dict[str, list[dict]] = {key: [] for key in sides}
    order = list(sides)
    for i in range(repeats):
        for key in order[i % len(order):] + order[:i % len(order)]:
            started = time.perf_counter()
            runs[key].append(sides[key](i))
            print(f"[repeat {i + 1}/{repeats}] {key}: {describe(runs[key][-1])}, "
                  f"run {time.perf_counter() - started:.1f} s", flush=True)
    return runs


def trained(key: str, side: list[dict]) -> list[str]:
    """What says a side did not train: a loss missing or not finite, weights that did not move (problem lines)."""
    losses = [x for run in side for x in run["losses"]]
    found = []
    if not losses or not all(math.isfinite(x) for x in losses):
        found.append(f"{key}: a loss is missing or not finite")
    if not min(run["moved"] for run in side) > 0:
        found.append(f"{key}: the weights did not change")
    return found


def print_noise_and_problems(runs: dict[str, list[dict]], problems: list[str]) -> None:
    """A note when other processes took more than 5 % of the CPU during a run, then each problem."""
    busy = max(run["others"] for side in runs.values() for run in side)
    if busy > 0.05:
        print(f"note: other processes used up to {busy:.0%} of the machine's CPU during a run; rerun on a quiet "
              "machine for figures to keep")
    for problem in problems:
        print(f"problem: {problem}")
