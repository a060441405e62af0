"""trainer_log.jsonl: one JSON object per logging step, as LLaMA-Factory writes it.

Users read training from this file (and the report plots it), so the keys
match LLaMA-Factory's: current_steps, total_steps, loss, lr, epoch,
percentage, elapsed_time, remaining_time, plus any eval metrics, and
elapsed_s (seconds since training began or resumed, to the millisecond,
for rates such as tokens/s).
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from posttrain.data.io import atomic_path

_RENAMES = {"learning_rate": "lr"}
_SKIP = {"total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


class TrainerLogCallback(TrainerCallback):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.start = time.time()
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()
        self.start_step = state.global_step
        if state.is_world_process_zero:
            truncate_log(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        step, total = state.global_step, max(state.max_steps, 1)
        elapsed = time.time() - self.start
        done = max(step - self.start_step, 1)
        remaining = elapsed / done * max(total - step, 0)
        record = {
            "current_steps": step,
            "total_steps": total,
            "epoch": round(state.epoch or 0.0, 4),
            "percentage": round(step / total * 100, 2),
            "elapsed_time": str(datetime.timedelta(seconds=int(elapsed))),
            "remaining_time": str(datetime.timedelta(seconds=int(remaining))),
            "elapsed_s": round(elapsed, 3),  # the string above is LLaMA-Factory's, to the second; rates need more
        }
        for key, value in logs.items():
            if key not in _SKIP and isinstance(value, (int, float)):
                record[_RENAMES.get(key, key)] = value
        if "train_loss" in logs:
            record["train_loss"] = logs["train_loss"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """On resume, drop lines past the checkpoint: the steps after it are run again."""
    if not path.exists():
        return

    keep = [line for line in read_log(path) if line.get("current_steps", 0) <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(line) + "\n" for line in keep), encoding="utf-8")


def read_log(path: str | Path) -> list[dict]:
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    return lines


def plot_loss(log_path: Path, out: Path) -> Path | None:
    """training_loss.png from the log (LLaMA-Factory's `plot_loss`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(r["current_steps"], r["loss"]) for r in read_log(log_path) if "loss" in r]
    if not points:
        logging.getLogger("posttrain").warning("plot_loss: %s has no logged training loss; no plot written "
                                               "(log more often with trainer.logging_steps)", log_path)
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*zip(*points), label="train loss")
    evals = [(r["current_steps"], r["eval_loss"]) for r in read_log(log_path) if "eval_loss" in r]
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def reward_trend(log_path: Path) -> dict:
    """Mean reward over the first and the last fifth of logged steps: did reinforcement move it?"""
    rewards = [row["reward"] for row in read_log(log_path) if isinstance(row.get("reward"), (int, float))]
    if len(rewards) < 5:
        return {}
    fifth = len(rewards) // 5
    return {"reward_first_fifth": round(sum(rewards[:fifth]) / fifth, 4),
            "reward_last_fifth": round(sum(rewards[-fifth:]) / fifth, 4), "reward_steps_logged": len(rewards)}
