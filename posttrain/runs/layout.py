"""Where a run keeps things: names of the folders inside a run directory that several layers compute.

Stdlib only, so the stages, the evaluation report and the pipeline read the same layout without importing
each other.
"""

from __future__ import annotations

import re
from pathlib import Path


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
