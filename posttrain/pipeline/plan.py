"""What the pipeline decides before and between stages: what each stage starts from, what it is (its
fingerprint), what an eval stage compares, which stages are left to run.

`posttrain run` on node 0 (pipeline/loop.py) and on the other nodes (pipeline/follower.py) decide the same way
from these functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from posttrain import stages
from posttrain.config import PipelineConfig, StageConfig, reward_names
from posttrain.data.fingerprint import file_fingerprint, model_fingerprint
from posttrain.data.sources import content_fingerprint, resolve_sources
from posttrain.errors import ConfigError, PosttrainError
from posttrain.runs.manifest import read_manifest
from posttrain.stages.eval import unknown_models
from posttrain.training.engines import user_file


def to_run(config: PipelineConfig, selected: set[str], force: bool) -> list[StageConfig]:
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


def check_eval_models(config: PipelineConfig, selected: set[str]) -> None:
    """An eval stage's unknown model names fail the run before anything trains."""
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


def consumers(name: str, config: PipelineConfig, selected: set[str]) -> bool:
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


def output_fingerprint(fingerprint: str, entry: dict) -> str:
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


def pipeline_settings(config: PipelineConfig) -> dict:
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
    resolved = {"pipeline": pipeline_settings(config), "stage": dumped, "model": model_fp}
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
