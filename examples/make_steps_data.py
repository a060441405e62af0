"""Write examples/data/process_reward/: step-labelled arithmetic solutions for the process reward recipe.

recipes/reward_models/process_reward.yaml trains a step-level process reward
model on `steps` records (`prompt`, `completions`, `labels`, TRL's stepwise
supervision shape). Each problem is a short chain of additions and
subtractions of single digits ("Compute 2 + 7 - 3 + 5."); a solution works it
one operation per step ("2 + 7 = 9", "9 - 3 = 6", ...) and ends with "Answer: 11".
Half the solutions slip once, at a random step: the result is off by ten
(a dropped or doubled carry, ±10, or +20). The slip is what a model can learn to
spot locally: the step's own arithmetic is wrong. As in PRM800K, a solution's
annotation stops at its first wrong step, so every label says something about
its own step.
The held-out split uses problems the training split never shows. Run it to
regenerate; the output is deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "data" / "process_reward"
TRAIN, TEST = 1000, 150
SLIPS = (10, -10, 20)  # a dropped or doubled carry


def solution(rng: random.Random) -> dict:
    # running values stay within 0..19 and operands are single digits: a few hundred facts, each seen often
    value = rng.randint(1, 9)
    ops = []
    for _ in range(rng.randint(2, 4)):
        n = rng.randint(1, 9)
        add = value + n <= 19 and (value - n < 0 or rng.random() < 0.5)
        ops.append(("+" if add else "-", n))
        value = value + n if add else value - n
    start = value - sum(n if op == "+" else -n for op, n in ops)
    prompt = f"Compute {start} " + " ".join(f"{op} {n}" for op, n in ops) + "."
    slip_at = rng.randrange(len(ops)) if rng.random() < 0.5 else None
    steps, labels, value = [], [], start
    for i, (op, n) in enumerate(ops):
        result = value + n if op == "+" else value - n
        if i == slip_at:
            result += rng.choice([s for s in SLIPS if result + s >= 0])
        steps.append(f"{value} {op} {n} = {result}")
        labels.append(i != slip_at)
        if i == slip_at:  # annotation stops at the first wrong step, as in PRM800K
            break
        value = result
    else:
        steps.append(f"Answer: {value}")
        labels.append(True)
    return {"prompt": prompt, "completions": steps, "labels": labels}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main() -> None:
    rng = random.Random(7)
    OUT.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    train, test = [], []
    while len(train) < TRAIN:
        row = solution(rng)
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            train.append(row)
    while len(test) < TEST:
        row = solution(rng)
        if row["prompt"] not in seen:  # held-out problems are new problems
            seen.add(row["prompt"])
            test.append(row)
    write_jsonl(OUT / "train.jsonl", train)
    write_jsonl(OUT / "test.jsonl", test)
    print(f"{len(train)} training and {len(test)} held-out solutions written to {OUT}")


if __name__ == "__main__":
    main()
