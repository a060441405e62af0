"""Run the stages of a pipeline in order, skipping what is done and resuming what is not.

Each stage gets a fingerprint over its resolved config, its input model's
fingerprint and the bytes of its data. `manifest.json` records per stage the
fingerprint, status, times and output; a rerun skips a finished stage whose
fingerprint is unchanged and resumes an unfinished one from its last whole
checkpoint. Every write is atomic (a temporary file renamed into place), so
a process killed at any moment leaves a run the same command can finish.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import time
import uuid
from pathlib import Path

import yaml

from posttrain import stages
from posttrain.config import PipelineConfig, StageConfig, load_config, reward_names
from posttrain.data.fingerprint import file_fingerprint, model_fingerprint
from posttrain.data.io import atomic_path, write_json
from posttrain.data.sources import content_fingerprint, resolve_sources
from posttrain.errors import ConfigError, PosttrainError
from posttrain.runs.ownership import check_inside, check_no_links_out, remove_tree
from posttrain.runs.secrets import redact
from posttrain.training.engines import requested, user_file

log = logging.getLogger("posttrain")


def run(source, overrides=(), *, only: str | None = None, from_stage: str | None = None,
        force: bool = False, console=None, launch: dict | None = None) -> Path:
    """Run a pipeline file, dict or PipelineConfig; return its run directory.

    `launch` (nproc, nnodes, node_rank, master_addr, master_port) overrides the file's `launch:` block.
    """
    from rich.console import Console

    from posttrain import launch as launching

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

    _check_eval_models(config, selected)
    launching.check(config, _to_run(config, selected, force))
    if config.launch.node_rank > 0:  # node 0's `posttrain run` keeps the manifest; this one lends its processes
        from posttrain.launch.follower import follow

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
                if not done and stage.name not in selected and _consumers(stage.name, config, selected):
                    raise PosttrainError(f"stage {stage.name} has not finished with its current config; run it first "
                                         f"(without --only/--from), or name it with --from")
                if done:
                    console.print(f"[dim]↷ {stage.name}: unchanged since its last run, skipped[/dim]")
                    outputs[stage.name] = _output_fingerprint(fingerprint, entry)
                continue
            _check_stage_dir(stage, stage_dir, run_dir, entry)
            if force or entry.get("fingerprint") not in (None, fingerprint):
                remove_tree(stage_dir, run_dir)  # config, model or data changed: start over
            elif entry:
                _check_resume_world(stage, entry, config, stage_dir)
                console.print(f"[yellow]↻ {stage.name}: resuming an unfinished run[/yellow]")
            _run_stage(stage, config, model_path, stage_dir, fingerprint, manifest, console)
            outputs[stage.name] = _output_fingerprint(fingerprint, manifest.stages[stage.name])
    _print_comparisons(config, run_dir, console)
    console.print(f"[bold]run directory:[/bold] {run_dir}")
    return run_dir


def _check_stage_dir(stage: StageConfig, stage_dir: Path, run_dir: Path, entry: dict) -> None:
    """A stage deletes and writes only in a directory of its own: inside the run directory, made by posttrain
    (the manifest lists the stage, or the config.yaml it writes first names it), with no link out of it."""
    if not os.path.lexists(stage_dir):
        return
    check_inside(stage_dir, run_dir)
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


def _to_run(config: PipelineConfig, selected: set[str], force: bool) -> list[StageConfig]:
    """The selected stages, less those the manifest holds as done: a run trained on a GPU machine can go on
    with its eval stages on one without. (A done stage whose config has changed since is checked again just
    before it runs.)"""
    done = set()
    if not force:
        manifest = read_manifest(config.output_dir) or {}
        done = {name for name, entry in manifest.get("stages", {}).items() if entry.get("status") == "done"}
    return [stage for stage in config.stages if stage.name in selected and stage.name not in done]


def stage_output(stage: StageConfig, stage_dir: Path) -> Path:
    """What a finished stage leaves: its model, or for an eval stage its combined metrics."""
    return stage_dir / stages.output_name(stage.type)


def _check_eval_models(config: PipelineConfig, selected: set[str]) -> None:
    """An eval stage's unknown model names fail the run before anything trains."""
    from posttrain.stages.eval import unknown_models

    problems = [line for stage in config.stages if stage.type == "eval" and stage.name in selected
                for line in unknown_models(stage, config)]
    if problems:
        raise ConfigError("\n".join(problems))


def eval_models(stage: StageConfig, config: PipelineConfig, outputs: dict[str, str],
                cache: dict[str, str] | None = None) -> dict[str, str]:
    """The fingerprint of each model an eval stage evaluates: retraining any of them reruns the evaluation."""
    if stage.type != "eval":
        return {}
    cache = {} if cache is None else cache
    names = {s.name for s in config.stages}
    found = {}
    for ref in stage.models:
        if ref in outputs:
            found[ref] = outputs[ref]
        elif ref in names:
            found[ref] = "not yet trained"
        else:
            path = config.model if ref == "base" else ref
            if path not in cache:
                cache[path] = model_fingerprint(path)
            found[ref] = cache[path]
    return found


def _print_comparisons(config: PipelineConfig, run_dir: Path, console) -> None:
    """Each finished eval stage's Markdown table (rows: models, columns: figures), at the end of the run."""
    from posttrain.stages.eval import comparison

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
        from posttrain.evaluation.report import refresh_run_report

        report = refresh_run_report(run_dir)  # rebuilt now that every stage of this run has finished
        if report:
            console.print(f"\n[bold]report:[/bold] {report}", highlight=False, soft_wrap=True)


def _consumers(name: str, config: PipelineConfig, selected: set[str]) -> bool:
    return any(stage.name in selected and (stage.model == name or name in _reward_model_refs(stage)
                                           or name in (getattr(stage, "models", None) or []))
               for stage in config.stages)


def _reward_model_refs(stage: StageConfig) -> list[str]:
    return [r.model for r in getattr(stage, "rewards", None) or [] if getattr(r, "model", None)]


def reward_models(stage: StageConfig, config: PipelineConfig, outputs: dict[str, str]) -> dict[str, str]:
    """The fingerprint of each reward model a stage scores with: a retrained reward model retrains the policy."""
    found = {}
    names = [s.name for s in config.stages]
    for ref in _reward_model_refs(stage):
        if ref in outputs:
            found[ref] = outputs[ref]
        elif ref in names:
            if names.index(ref) > names.index(stage.name):
                raise ConfigError(f"stages.{stage.name}.rewards: reward model {ref!r} is a later stage; "
                                  "name an earlier one")
            found[ref] = "not yet trained"
        else:
            found[ref] = model_fingerprint(ref)
    return found


def _run_stage(stage, config, model_path, stage_dir, fingerprint, manifest, console):
    from posttrain.launch import launched

    if launched(stage, config):
        from posttrain.launch import check
        from posttrain.launch.runner import run_stage as launch_stage

        check(config, [stage])  # in this process, before N workers start and each stops with the same message

        train, how = launch_stage, {**config.launch.model_dump(), "processes": config.launch.processes}
    else:
        train, how = stages.run, None
    stage_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(stage_dir / "config.yaml") as tmp:
        resolved = {**_pipeline_settings(config), "input_model": model_path,
                    "stage": redact(stage.model_dump(mode="json"))}
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    manifest.update(stage.name, status="running", fingerprint=fingerprint, type=stage.type, input_model=model_path,
                    started=_now(), pid=os.getpid(), output=str(stage_output(stage, stage_dir)),
                    run_id=uuid.uuid4().hex, launch=how)
    origin = f"on {', '.join(stage.models)}" if stage.type == "eval" else f"from {model_path}"
    origin += f", {how['processes']} processes" if how else ""
    console.print(f"[bold cyan]▶ {stage.name}[/bold cyan] ({stage.type}) {origin}")
    started = time.time()
    try:
        metrics = train(stages.StageContext(config, stage, model_path, stage_dir))
    except BaseException as e:
        manifest.update(stage.name, status="failed", error=f"{type(e).__name__}: {e}"[:2000], finished=_now())
        raise
    write_json(stage_dir / "metrics.json", metrics)
    manifest.update(stage.name, status="done", finished=_now(), seconds=round(time.time() - started, 1),
                    metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))}, error=None)
    console.print(f"[green]✓ {stage.name}[/green] done in {time.time() - started:.1f}s → "
                  f"{stage_output(stage, stage_dir)}")
    if "reward_first_fifth" in metrics:
        console.print(f"  mean reward: first fifth of steps {metrics['reward_first_fifth']:.3f} → last fifth "
                      f"{metrics['reward_last_fifth']:.3f}", highlight=False)


def _output_fingerprint(fingerprint: str, entry: dict) -> str:
    """A stage's output changes when it is retrained, even with the same config (--force, a deleted model)."""
    return hashlib.sha256(f"{fingerprint}:{entry.get('run_id')}".encode()).hexdigest()


def input_model(stage: StageConfig, config: PipelineConfig, outputs: dict[str, str],
                cache: dict[str, str] | None = None) -> tuple[str, str]:
    """The model a stage starts from, and that model's fingerprint."""
    cache = {} if cache is None else cache
    ref = stage.model or "base"
    if ref in outputs:
        return str(Path(config.output_dir) / ref / "model"), outputs[ref]
    names = [s.name for s in config.stages]
    if ref in names:
        if names.index(ref) < names.index(stage.name):
            raise PosttrainError(f"stage {stage.name} starts from {ref}, which has not finished; run {ref} first")
        raise ConfigError(f"stages.{stage.name}.model: {ref!r} is a later stage; a stage can start from an earlier one")
    path = config.model if ref == "base" else ref
    if path not in cache:
        cache[path] = model_fingerprint(path)
    return path, cache[path]


def _pipeline_settings(config: PipelineConfig) -> dict:
    keys = ("seed", "dtype", "trust_remote_code", "template", "attn_implementation")
    return {key: getattr(config, key) for key in keys}


# trainer keys that change how a run is logged, saved or resumed, not the model it trains
_NOT_FINGERPRINTED = {
    "resume_from_checkpoint", "logging_steps", "logging_strategy", "logging_first_step", "logging_dir", "save_steps",
    "save_strategy", "save_total_limit", "report_to", "run_name", "disable_tqdm", "dataloader_num_workers",
    "dataset_num_proc", "eval_steps", "per_device_eval_batch_size", "push_to_hub", "hub_model_id", "hub_token",
    "hub_strategy", "hub_private_repo",
}


def stage_fingerprint(stage: StageConfig, config: PipelineConfig, model_fp: str,
                      reward_model_fps: dict[str, str] | None = None,
                      eval_model_fps: dict[str, str] | None = None) -> str:
    dumped = stage.model_dump(mode="json")
    dumped["trainer"] = {k: v for k, v in dumped.get("trainer", {}).items() if k not in _NOT_FINGERPRINTED}
    dumped.pop("plot_loss", None)
    for engine in ("deepspeed", "fsdp"):  # fields newer than many runs: unset, they leave old fingerprints as they were
        if dumped.get(engine) is None:
            dumped.pop(engine, None)
    if stage.type == "eval":
        dumped.pop("batch_size", None)  # how fast, not what: greedy outputs do not depend on the batch
    resolved = {"pipeline": _pipeline_settings(config), "stage": dumped, "model": model_fp}
    for field in ("data", "eval_data"):
        spec = getattr(stage, field, None)
        if spec is not None:
            resolved[f"{field}_content"] = content_fingerprint(resolve_sources(spec))
    resolved.update(_search_inputs(stage))
    engine_file = user_file(stage) if stages.trains(stage.type) else None
    if engine_file and os.path.isfile(engine_file):
        resolved["engine_file_content"] = file_fingerprint(engine_file)
    if reward_model_fps:
        resolved["reward_models"] = reward_model_fps
    if eval_model_fps:
        resolved["eval_models"] = eval_model_fps
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


def _search_inputs(stage: StageConfig) -> dict:
    """What a stage's study-search rewards will query, the index's content included: their answers depend on it.

    The stage's own settings, else the environment's (POSTTRAIN_SEARCH_BACKEND, POSTTRAIN_SEARCH_INDEX), which
    count only where a study-search reward is listed.
    """
    if stage.type not in ("grpo", "eval"):
        return {}
    searching = any(name.startswith("study_search") for name in reward_names(stage))
    from_env = os.environ if searching else {}
    inputs = {"search_backend": stage.search_backend or from_env.get("POSTTRAIN_SEARCH_BACKEND") or "index"}
    if stage.search_corpus:
        inputs["search_corpus_content"] = file_fingerprint(stage.search_corpus)
    index = stage.search_index or (None if stage.search_corpus else from_env.get("POSTTRAIN_SEARCH_INDEX"))
    if index and inputs["search_backend"] != "ncbi":
        inputs["search_index_content"] = file_fingerprint(index)
    return inputs


class Manifest:
    """manifest.json: per stage fingerprint, status, times and output; versions; git commit."""

    def __init__(self, run_dir: Path, config: PipelineConfig):
        self.path = run_dir / "manifest.json"
        data = read_manifest(run_dir) or {}
        self.data = {
            "name": config.name,
            "created": data.get("created", _now()),
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
        self.data["updated"] = _now()
        self.save()

    def save(self) -> None:
        write_json(self.path, self.data)


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


def _now() -> str:
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
