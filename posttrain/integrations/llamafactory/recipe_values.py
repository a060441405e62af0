"""How a recipe's names read, in every kind of LLaMA-Factory recipe (v0, predict-only, v1): a comma list of
names, and the pipeline name an output_dir gives. One place, so the three translations cannot read them apart."""

from __future__ import annotations

import re
from pathlib import Path


def names(value) -> list[str]:
    """`a, b` or `[a, b]` as the names, blanks dropped."""
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def pipeline_name(output_dir, fallback: str) -> str:
    """The run folder's name under runs/: output_dir's last part in the characters a pipeline name takes."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(str(output_dir or "")).name)
    return name if name.strip(".") else fallback
