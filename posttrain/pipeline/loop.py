"""Run the stages of a pipeline in order, skipping what is done and resuming what is not.

Each stage gets a fingerprint over its resolved config, its input model's
fingerprint and the bytes of its data (pipeline/plan.py). `manifest.json` records per stage the
fingerprint, status, times and output; a rerun skips a finished stage whose
fingerprint is unchanged and resumes an unfinished one from its last whole
checkpoint. Every write is atomic (a temporary file renamed into place), so
a process killed at any moment leaves a run the same command can finish.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import logging
import os
import time
import uuid
from pathlib import Path

import yaml

from posttrain import launch as launching
from posttrain import stages
from posttrain.config import PipelineConfig, StageConfig, load_config
from posttrain.data.io import atomic_path, write_json
from posttrain.errors import ConfigError, PosttrainError
from posttrain.evaluation.report import refresh_run_report
from posttrain.launch.runner import run_stage as launch_stage
from posttrain.pipeline.follower import follow
from posttrain.pipeline.manifest import Manifest, now
from posttrain.pipeline.plan import (check_eval_models, consumers, eval_models, input_model, output_fingerprint,
                                     pipeline_settings, reward_models, stage_fingerprint, stage_output, to_run)
from posttrain.runs.manifest import read_manifest
from posttrain.runs.ownership import check_inside, check_no_links_out, remove_tree
from posttrain.runs.secrets import redact
from posttrain.stages.eval import comparison
from posttrain.training.engines import requested

log = logging.getLogger("posttrain")


def run(source, overrides=(), *, only: str | None = None, from_stage: str | None = None,
        force: bool = False, console=None, launch: dict | None = None) -> Path:
    """Run a pipeline file, dict or PipelineConfig; return its run directory.

    `launch` (nproc, nnodes, node_rank, master_addr, master_port) overrides the file's `launch:` block.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    config = source if isinstance(source, PipelineConfig) else load_config(source, overrides)
    config = launching.with_launch(config, launch)
    names = [stage.name for stage in config.stages]
    selected = set(names)
    if only:
        config.stage(only)
        selected = {only}
    elif from_stage:
        config.stage(from_stage)
        selected = set(names[names.index(from_stage):])

    check_eval_models(config, selected)
    launching.check(config, to_run(config, selected, force))
    if config.launch.node_rank > 0:  # node 0's `posttrain run` keeps the manifest; this one lends its processes
        return follow(config, selected, force, console)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _lock(run_dir):
        manifest = Manifest(run_dir, config)
        outputs: dict[str, str] = {}  # stage name -> fingerprint of the model it wrote
        base_fingerprints: dict[str, str] = {}
        for stage in config.stages:
            model_path, model_fp = input_model(stage, config, outputs, base_fingerprints)
            fingerprint = stage_fingerprint(stage, config, model_fp, reward_models(stage, config, outputs),
                                            eval_models(stage, config, outputs, base_fingerprints))
            entry = manifest.stages.get(stage.name, {})
            stage_dir = run_dir / stage.name
            done = (entry.get("status") == "done" and entry.get("fingerprint") == fingerprint
                    and stage_output(stage, stage_dir).exists())
            if stage.name not in selected or (done and not force):
                if not done and stage.name not in selected and consumers(stage.name, config, selected):
                    raise PosttrainError(f"stage {stage.name} has not finished with its current config; run it first "
                                         f"(without --only/--from), or name it with --from")
                if done:
                    console.print(f"[dim]↷ {stage.name}: unchanged since its last run, skipped[/dim]")
                    outputs[stage.name] = output_fingerprint(fingerprint, entry)
                continue
            _check_stage_dir(stage, stage_dir, run_dir, entry)
            if force or entry.get("fingerprint") not in (None, fingerprint):
                remove_tree(stage_dir, run_dir)  # config, model or data changed: start over
            elif entry:
                _check_resume_world(stage, entry, config, stage_dir)
                console.print(f"[yellow]↻ {stage.name}: resuming an unfinished run[/yellow]")
            _run_stage(stage, config, model_path, stage_dir, fingerprint, manifest, console)
            outputs[stage.name] = output_fingerprint(fingerprint, manifest.stages[stage.name])
    _print_comparisons(config, run_dir, console)
    console.print(f"[bold]run directory:[/bold] {run_dir}")
    return run_dir


def _check_stage_dir(stage: StageConfig, stage_dir: Path, run_dir: Path, entry: dict) -> None:
    """A stage deletes and writes only in a directory of its own: inside the run directory, made by posttrain
    (the manifest lists the stage, or the config.yaml it writes first names it), with no link out of it."""
    if not os.path.lexists(stage_dir):
        return
    check_inside(stage_dir, run_dir)
    if stage_dir.is_dir() and not entry:
        # killed between making the directory and renaming its config.yaml into place: when only our temporary
        # file (atomic_path's) is there, the directory is still ours to start in
        left = list(stage_dir.iterdir())
        if left and all(fnmatch.fnmatch(path.name, ".config.yaml.*.tmp") and path.is_file() for path in left):
            for path in left:
                path.unlink()
    empty = stage_dir.is_dir() and not any(stage_dir.iterdir())
    if not entry and not empty and not _made_for(stage, stage_dir):
        raise PosttrainError(f"{stage_dir}: already exists and is not stage {stage.name}'s (manifest.json does "
                             "not list it, and it has no config.yaml of the stage); posttrain neither deletes nor "
                             "writes into it. Move it, or choose another output_dir")
    check_no_links_out(stage_dir)


def _made_for(stage: StageConfig, stage_dir: Path) -> bool:
    try:
        written = yaml.safe_load((stage_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    block = written.get("stage") if isinstance(written, dict) else None
    return isinstance(block, dict) and block.get("name") == stage.name


def _check_resume_world(stage: StageConfig, entry: dict, config: PipelineConfig, stage_dir: Path) -> None:
    """DeepSpeed and FSDP shard the optimizer state by process: their checkpoints resume on as many processes as
    wrote them (plain DDP checkpoints resume on any number)."""
    engine = requested(stage) if stages.trains(stage.type) else None
    wrote = (entry.get("launch") or {}).get("processes", 1)
    if engine and wrote != config.launch.processes and any((stage_dir / "checkpoints").glob("checkpoint-*")):
        name = "DeepSpeed" if engine == "deepspeed" else "FSDP"
        raise ConfigError(f"stage {stage.name}: its {name} checkpoints were written by {wrote} processes and "
                          f"resume only on {wrote} (the optimizer state is sharded by process); this run has "
                          f"{config.launch.processes}. Fix: run it with {wrote} processes, or --force to start the "
                          "stage over")


def _print_comparisons(config: PipelineConfig, run_dir: Path, console) -> None:
    """Each finished eval stage's Markdown table (rows: models, columns: figures), at the end of the run."""
    manifest = read_manifest(run_dir) or {}
    evaluated = False
    for stage in config.stages:
        if stage.type != "eval" or manifest.get("stages", {}).get(stage.name, {}).get("status") != "done":
            continue
        evaluated = True
        table = comparison(run_dir / stage.name)
        if table:
            console.print(f"\n[bold]{stage.name}[/bold] ({run_dir / stage.name / 'metrics.json'})\n", highlight=False)
            console.print(table, markup=False, highlight=False, soft_wrap=True)
    if evaluated:
        report = refresh_run_report(run_dir)  # rebuilt now that every stage of this run has finished
        if report:
            console.print(f"\n[bold]report:[/bold] {report}", highlight=False, soft_wrap=True)


def _run_stage(stage, config, model_path, stage_dir, fingerprint, manifest, console):
    if launching.launched(stage, config):
        launching.check(config, [stage])  # in this process, before N workers start and each stops with the same message

        train, how = launch_stage, {**config.launch.model_dump(), "processes": config.launch.processes}
    else:
        train, how = stages.run, None
    stage_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(stage_dir / "config.yaml") as tmp:
        resolved = {**pipeline_settings(config), "input_model": model_path,
                    "stage": redact(stage.model_dump(mode="json"))}
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    manifest.update(stage.name, status="running", fingerprint=fingerprint, type=stage.type, input_model=model_path,
                    started=now(), pid=os.getpid(), output=str(stage_output(stage, stage_dir)),
                    run_id=uuid.uuid4().hex, launch=how)
    origin = f"on {', '.join(stage.models)}" if stage.type == "eval" else f"from {model_path}"
    origin += f", {how['processes']} processes" if how else ""
    console.print(f"[bold cyan]▶ {stage.name}[/bold cyan] ({stage.type}) {origin}")
    started = time.time()
    try:
        metrics = train(stages.StageContext(config, stage, model_path, stage_dir))
    except KeyboardInterrupt:  # Ctrl-C, or a dashboard's stop: the stage resumes from its last checkpoint
        manifest.update(stage.name, status="interrupted", finished=now())
        raise
    except BaseException as e:
        manifest.update(stage.name, status="failed", error=f"{type(e).__name__}: {e}"[:2000], finished=now())
        raise
    write_json(stage_dir / "metrics.json", metrics)
    manifest.update(stage.name, status="done", finished=now(), seconds=round(time.time() - started, 1),
                    metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))}, error=None)
    console.print(f"[green]✓ {stage.name}[/green] done in {time.time() - started:.1f}s → "
                  f"{stage_output(stage, stage_dir)}")
    if "reward_first_fifth" in metrics:
        console.print(f"  mean reward: first fifth of steps {metrics['reward_first_fifth']:.3f} → last fifth "
                      f"{metrics['reward_last_fifth']:.3f}", highlight=False)


@contextlib.contextmanager
def _lock(run_dir: Path):
    """One process per run directory; the OS drops the lock when the process dies, even by SIGKILL."""
    try:  # never through a link: opening one would create or truncate the file it points to
        handle = os.fdopen(os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+")
    except OSError as e:
        raise PosttrainError(f"{run_dir / '.lock'}: cannot be opened as this run's lock file ({e.strerror}); "
                             "posttrain does not write through a symbolic link there. Remove it") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PosttrainError(f"{run_dir}: another posttrain process is running this pipeline") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
