"""Where a run keeps things: names of the folders inside a run directory that several layers compute.

Stdlib only, so the stages, the evaluation report and the pipeline read the same layout without importing
each other.
"""

from __future__ import annotations

import re
from pathlib import Path

from posttrain.runs.manifest import read_manifest


def model_label(ref: str) -> str:
    """The folder an eval stage writes a model's results to: its name, or a model directory's own name."""
    path = Path(ref.rstrip("/"))
    if path.name in ("", ".", ".."):  # `.`, `../..`: the directory's own name, never a way up from <stage>/
        path = Path(ref).resolve()
    if len(path.parts) <= 1:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", ref)
    base = path.parent.name if path.name == "model" and path.parent.name else path.name  # <stage>/model
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base).strip(".") or "model"


def reward_model_path(ref: str, config) -> str:
    """A GRPO reward's `model:`: an earlier stage's saved model, or a model directory as given."""
    if ref in {s.name for s in config.stages}:
        return str(Path(config.output_dir) / ref / "model")
    return ref


def run_of(path: str) -> tuple[Path, str, dict] | None:
    """(run directory, stage, manifest) when `path` is a posttrain run's `<run>/<stage>/model`."""
    path = Path(path)
    if path.name != "model" or not (path.parent.parent / "manifest.json").is_file():
        return None
    manifest = read_manifest(path.parent.parent) or {}
    stage = path.parent.name
    return (path.parent.parent, stage, manifest) if stage in manifest.get("stages", {}) else None


def run_input(path: str) -> str | None:
    """The model a run's stage started from, when `path` is that stage's model."""
    run = run_of(path)
    return run[2]["stages"][run[1]].get("input_model") if run else None
