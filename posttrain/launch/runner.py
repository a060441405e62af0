"""Run one training stage under `accelerate launch` and bring back what rank 0 measured.

The parent (`posttrain run`) writes the worker's input to a private
temporary folder (the resolved pipeline may hold a hub token, so it goes
neither to the run directory nor on a command line), writes the accelerate
config beside it, starts `accelerate launch ... -m posttrain.launch.worker
FOLDER` in its own process group, and waits. Whatever ends the wait (an
error, Ctrl-C) ends the whole group too; if the parent itself is killed,
the launcher gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and the workers
notice on their own (worker.py), so no orphan keeps training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.launch import accelerate_config
from posttrain.launch.process import die_with_parent
from posttrain.rewards.search.index import corpus_index
from posttrain.training import engines


class LaunchError(PosttrainError):
    """The launched processes failed for a reason other than bad input (their output says which): a message and
    exit status 1, no traceback of the parent on top of theirs."""

    exit_code = 1


def run_stage(ctx, *, collect: bool = True) -> dict:
    """Train `ctx.stage` on the pipeline's launch; rank 0's metrics (empty on a node whose rank 0 is elsewhere,
    `collect=False`)."""
    launch = ctx.pipeline.launch
    cuda = engines.cuda()
    if collect:  # node 0 builds what its ranks share; another node's workers read it from the shared filesystem
        _prepare(ctx)
    with tempfile.TemporaryDirectory(prefix="posttrain-launch-") as tmp:  # mode 0700
        folder = Path(tmp)
        _check_plan(ctx, folder / "plan")
        payload = {"pipeline": dump(ctx.pipeline), "stage": ctx.stage.name, "model_path": str(ctx.model_path),
                   "stage_dir": str(Path(ctx.stage_dir).resolve())}
        (folder / "payload.json").write_text(json.dumps(payload), encoding="utf-8")
        config_file = accelerate_config.write(launch, folder, accelerate_config.port_for(launch))
        argv = accelerate_config.command(config_file, folder, accelerate_config.threads_per_process(launch, cuda))
        returncode = _wait(argv, accelerate_config.environment(launch, cuda, os.getpid()))
        errors = sorted(folder.glob("error-*.json"))
        if errors:
            raise PosttrainError(json.loads(errors[0].read_text(encoding="utf-8"))["message"])
        if returncode != 0:
            raise LaunchError(f"stage {ctx.stage.name}: the launched processes failed (accelerate launch exit "
                              f"status {returncode}); their output above says why")
        result = folder / "result.json"
        if collect and not result.exists():
            raise LaunchError(f"stage {ctx.stage.name}: rank 0 finished without leaving its metrics")
        return json.loads(result.read_text(encoding="utf-8")) if result.exists() else {}


def dump(config) -> dict:
    """The pipeline as plain data PipelineConfig validates back: each stage by its own class (a list of the base
    class would dump the base's fields only)."""
    return {**config.model_dump(mode="json", exclude={"stages"}),
            "stages": [stage.model_dump(mode="json") for stage in config.stages]}


def _check_plan(ctx, output_dir: Path) -> None:
    """The stage's trainer config, built here as each rank will build it, so that what TRL or transformers
    refuse in it (a ddp_backend this machine lacks, a bad value) is one message before any worker starts, not
    the same error from every rank under the launcher's traceback."""
    import importlib

    if engines.requested(ctx.stage) is not None:
        return  # DeepSpeed's TrainingArguments set up its distributed state: only inside the launch
    importlib.import_module(f"posttrain.stages.{ctx.stage.type}").plan(ctx.stage, ctx.pipeline, output_dir)


def _prepare(ctx) -> None:
    """What every rank would otherwise race to make: a GRPO stage's search index over its corpus."""
    corpus = getattr(ctx.stage, "search_corpus", None)
    if corpus and not getattr(ctx.stage, "search_index", None):
        Path(ctx.stage_dir).mkdir(parents=True, exist_ok=True)
        corpus_index(corpus, ctx.stage_dir)


def _wait(argv: list[str], env: dict[str, str]) -> int:
    process = subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=die_with_parent)
    try:
        return process.wait()
    except BaseException:
        _stop(process)
        raise


def _stop(process: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to the launch's process group (torch's launcher passes it to its workers), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
