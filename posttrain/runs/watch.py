"""What a watcher reads of run directories while they run: which runs there are, how far each stage has got, its
headline figure, and the steps logged since the last look.

A dashboard over runs (`posttrain ui`) must show a run started from a terminal as well as one it started itself,
so it reads only what every pipeline writes: manifest.json, <stage>/trainer_log.jsonl and an eval stage's
metrics.json. Nothing is cached or locked, and a log being written is read up to its last whole line. Stdlib only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from posttrain.runs.manifest import read_manifest, stage_states

MAX_DEPTH = 3  # runs/<group>/<run>/manifest.json: deep enough for sweeps, shallow enough to list at once
TAIL_BYTES = 1 << 16  # of a log, what its last step and latest values need: the run list polls every stage


def find_runs(roots, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Every run directory (one holding manifest.json) at or under each root, down `max_depth` levels, sorted.
    Links are not followed, so nothing outside a root is listed, and a run is not searched inside."""
    found: list[Path] = []
    for root in map(Path, roots):
        if (root / "manifest.json").is_file():
            found.append(root)
            continue
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            if depth >= max_depth:
                continue
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False) or entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                if (path / "manifest.json").is_file():
                    found.append(path)
                else:
                    stack.append((path, depth + 1))
    return sorted(set(found))


def read_log(path, offset: int = 0) -> tuple[list[dict], int]:
    """The rows of a trainer_log.jsonl from byte `offset`, and the offset to read from next time. A last line
    still being written is left for then; a line that is not a JSON object is skipped."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:  # the log was truncated (a stage resumed from a checkpoint): read it again
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    whole = data.rfind(b"\n") + 1
    rows = []
    for line in data[:whole].splitlines():
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + whole


def last_rows(path, nbytes: int = TAIL_BYTES) -> list[dict]:
    """The rows of the whole lines in a trainer log's last `nbytes`, without reading the rest of it."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return []
    start = max(size - nbytes, 0)
    if start:
        with open(path, "rb") as f:  # from the start of the first whole line after `start`
            f.seek(start - 1)
            start += len(f.readline()) - 1
    return read_log(path, start)[0]


def overview(run_dir) -> dict:
    """A run's name, times and stages: each stage's state, times, progress (step of total, ETA) and headline."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir) or {}
    stages = []
    for row in stage_states(run_dir):
        log = last_rows(run_dir / row["name"] / "trainer_log.jsonl")
        stages.append({
            "name": row["name"], "type": row.get("type"), "status": row.get("status", "pending"),
            **{key: row[key] for key in ("started", "finished", "seconds", "error") if key in row},
            "progress": progress(log, row.get("status")),
            "headline": headline(run_dir, row, log),
        })
    return {"name": manifest.get("name", run_dir.name), "path": str(run_dir), "created": manifest.get("created"),
            "updated": manifest.get("updated"), "stages": stages}


def progress(log: list[dict], status: str | None) -> dict | None:
    """Step of total, percentage and remaining time from a stage's last logged step (None before its first)."""
    last = next((row for row in reversed(log) if "current_steps" in row and "total_steps" in row), None)
    if last is None:
        return None
    done = status == "done"
    return {"step": last["total_steps"] if done else last["current_steps"], "total": last["total_steps"],
            "percentage": 100.0 if done else last.get("percentage"),
            "remaining": "0:00:00" if done else last.get("remaining_time")}


def headline(run_dir: Path, stage: dict, log: list[dict]) -> dict | None:
    """The one figure a run list shows for a stage: an eval stage's first metric for its last model, a GRPO
    stage's mean reward over its last fifth of steps, a training stage's eval loss, else its train loss."""
    metrics = stage.get("metrics") or {}
    if stage.get("type") == "eval":
        try:
            results = json.loads((run_dir / stage["name"] / "metrics.json").read_text(encoding="utf-8"))
            model, figures = list(results["figures"].items())[-1]
            name = results["metric_names"][0]
            return {"name": f"{model} {name}", "value": figures[name]}
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None
    if "reward_last_fifth" in metrics:
        return {"name": "mean reward, last fifth of steps", "value": metrics["reward_last_fifth"]}
    for key, name in (("eval_loss", "eval loss"), ("train_loss", "train loss")):
        if isinstance(metrics.get(key), (int, float)):
            return {"name": name, "value": metrics[key]}
    for key, name in (("reward", "reward"), ("loss", "loss")):  # a running stage: its latest logged value
        value = next((row[key] for row in reversed(log) if isinstance(row.get(key), (int, float))), None)
        if value is not None:
            return {"name": f"{name} (latest)", "value": value}
    return None
