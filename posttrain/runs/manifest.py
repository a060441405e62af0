"""Reading a run's manifest.json: what ran, with which fingerprint, and each stage's state now.

Stdlib only: `posttrain status`, the report and the export card read a run without the pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from posttrain.errors import PosttrainError


def read_manifest(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PosttrainError(f"{path}: not valid JSON ({e.msg}); was it edited by hand?") from None


def stage_states(run_dir: str | Path) -> list[dict]:
    """Each stage's name, type, status (done/running/interrupted/failed/pending), times and output."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        raise PosttrainError(f"{run_dir}: no manifest.json; not a posttrain run directory")
    rows = []
    for name in manifest.get("stage_order") or list(manifest["stages"]):
        entry = dict(manifest["stages"].get(name, {"status": "pending"}))
        if entry.get("status") == "running" and not _alive(entry.get("pid")):
            entry["status"] = "interrupted"
        rows.append({"name": name, **entry})
    return rows


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    try:  # a killed process nobody has reaped yet still answers kill(0)
        return Path(f"/proc/{int(pid)}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True
