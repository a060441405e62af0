"""`python -m posttrain.launch.worker FOLDER`: one rank of a training stage started by `accelerate launch`.

The `posttrain run` process (runner.py) leaves in FOLDER the resolved
pipeline, the stage's name, its input model and its directory. Every rank
runs the same stage function a one-process run calls; the Trainer and
posttrain's own writers (training/finish.py, training/logs.py) write from
rank 0 only. Rank 0 hands its metrics back in `result.json`; a rank that
meets bad input leaves its message in `error-<rank>.json`, so the parent
reports it as the same PosttrainError a one-process run would raise.

A worker also watches the `posttrain run` process that started it: killed
(even by SIGKILL) it cannot stop its launch, so the workers stop themselves
and the next `posttrain run` resumes the stage from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from posttrain import stages
from posttrain.config.load import from_dict
from posttrain.errors import PosttrainError
from posttrain.launch.process import start_time

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m posttrain.launch.worker FOLDER (written by posttrain run)", file=sys.stderr)
        return EXIT_USER_ERROR
    folder = Path(argv[0])
    payload = json.loads((folder / "payload.json").read_text(encoding="utf-8"))
    _watch_parent()
    rank = int(os.environ.get("RANK", "0"))

    try:
        metrics = run(payload)
    except PosttrainError as e:
        _write(folder / f"error-{rank}.json", {"message": str(e)})
        return EXIT_USER_ERROR
    finally:
        _leave_group()
    if rank == 0:
        _write(folder / "result.json", metrics)
    return 0


def run(payload: dict) -> dict:
    from accelerate import PartialState

    config = from_dict(payload["pipeline"])
    stage = config.stage(payload["stage"])
    ctx = stages.StageContext(config, stage, payload["model_path"], Path(payload["stage_dir"]))
    metrics = stages.run(ctx)
    metrics["processes"] = PartialState().num_processes  # the world the Trainer really trained in
    return metrics


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    tmp.rename(path)


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _watch_parent(interval: float = 1.0) -> None:
    """Exit when the `posttrain run` process is gone; its start time tells a reused pid from it."""
    pid = int(os.environ.get("POSTTRAIN_PARENT_PID") or 0)
    if not pid:
        return
    # the parent's start time as the parent read it, so a parent already gone (or its pid reused) when this
    # worker starts is told apart too
    started = os.environ.get("POSTTRAIN_PARENT_START") or start_time(pid)

    def watch():
        while True:
            time.sleep(interval)
            if start_time(pid) != started:
                print(f"posttrain.launch.worker: posttrain run (pid {pid}) is gone; stopping", file=sys.stderr)
                os._exit(1)

    threading.Thread(target=watch, name="posttrain-parent-watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
