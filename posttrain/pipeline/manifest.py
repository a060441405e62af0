"""manifest.json as the pipeline writes it: per stage fingerprint, status, times and output; versions; git commit.

Readers (`posttrain status`, the report, export's model card) use posttrain/runs/manifest.py, which needs
nothing of the pipeline.
"""

from __future__ import annotations

import contextlib
import datetime
import subprocess
from pathlib import Path

from posttrain.data.io import write_json
from posttrain.runs.manifest import read_manifest


class Manifest:
    """manifest.json: per stage fingerprint, status, times and output; versions; git commit."""

    def __init__(self, run_dir: Path, config):
        self.path = run_dir / "manifest.json"
        data = read_manifest(run_dir) or {}
        self.data = {
            "name": config.name,
            "created": data.get("created", now()),
            "versions": _versions(),
            "torch_threads": _torch_threads(),  # CPU figures depend on it: reductions split by thread
            "git_commit": _git_commit(),
            "stage_order": [s.name for s in config.stages],
            "stages": data.get("stages", {}),
        }
        self.stages = self.data["stages"]
        self.save()

    def update(self, name: str, **fields) -> None:
        entry = self.stages.setdefault(name, {})
        entry.update(fields)
        for key in [k for k, v in entry.items() if v is None]:
            del entry[key]
        self.data["updated"] = now()
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("posttrain", "torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None
