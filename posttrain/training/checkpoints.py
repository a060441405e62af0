"""Find the checkpoint to resume from, ignoring one a kill left half-written.

transformers writes a checkpoint's files one after another and
`trainer_state.json` last, so a checkpoint is whole when that file parses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from posttrain.runs.ownership import remove_tree

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)))


def is_complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return True


def latest_checkpoint(folder: str | Path, *, prune: bool = True) -> Path | None:
    """The newest whole checkpoint; with `prune`, half-written newer ones are removed."""
    for checkpoint in reversed(checkpoints(folder)):
        if is_complete(checkpoint):
            return checkpoint
        if prune:
            remove_tree(checkpoint, folder)
    return None
