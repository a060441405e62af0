"""The stage table: a stage type's name -> the module that is the stage type, and what everyone asks of it.

Adding a stage type is its module and one row in STAGES. A stage module has, as module attributes:

- `Config`: its pydantic class (a subclass of config.schema.StageConfig, with `type: Literal["<name>"]`);
- `RECORD`: the canonical record type its `data:` reads (the data doctor checks it), or None;
- `TRAINS` (default True): launched on several processes, checked by training/requirements.py;
- `OUTPUT` (default "model"): what a finished stage leaves in its directory;
- `plan(stage, pipeline, out)`: what validate builds before anything runs (the trainer config, for a training stage);
- `run(ctx) -> dict`: the stage, top to bottom;
- optional `problems(stage, pipeline, launched)` and `notes(stage, pipeline)`: what this machine lacks for it
  (default: training/requirements.py's, for a training stage).

Validation, the launcher, the GPU checks, the data doctor and the fingerprint ask this module, never a list
of their own. Stage modules keep trl and transformers inside their functions, so typing a config imports
every Config cheaply.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from posttrain.config.schema import PipelineConfig, StageConfig
from posttrain.errors import ConfigError, PosttrainError, closest
from posttrain.training import requirements

STAGES = {
    "sft": "posttrain.stages.sft",
    "grpo": "posttrain.stages.grpo",
    "process_reward": "posttrain.stages.process_reward",
    "reward_model": "posttrain.stages.reward_model",
    "eval": "posttrain.stages.eval",
    "export": "posttrain.stages.export",
    "pt": "posttrain.stages.pt",
    "dpo": "posttrain.stages.dpo",
    "kto": "posttrain.stages.kto",
    "orpo": "posttrain.stages.orpo",
    "simpo": "posttrain.stages.simpo",
}


def get(kind: str) -> ModuleType:
    """The module of stage type `kind`."""
    if kind not in STAGES:
        raise ConfigError(f"unknown stage type {kind!r}; known: {', '.join(STAGES)}{closest(str(kind), STAGES)}")
    return importlib.import_module(STAGES[kind])


def config_class(kind: str) -> type[StageConfig]:
    return get(kind).Config


def trains(kind: str) -> bool:
    """Whether the stage type trains: launched on several processes, and checked for what training needs."""
    return getattr(get(kind), "TRAINS", True)


def record_type(kind: str) -> str | None:
    return getattr(get(kind), "RECORD", None)


def reads(kind: str) -> str:
    """The record type stage type `kind` reads (what `posttrain data check --stage` checks for)."""
    readers = [name for name in STAGES if record_type(name)]
    if kind not in readers:
        raise PosttrainError(f"stage: expected one of {', '.join(readers)}, got {kind!r}")
    return record_type(kind)


def output_name(kind: str) -> str:
    return getattr(get(kind), "OUTPUT", "model")


def problems(stage: StageConfig, pipeline: PipelineConfig, launched: bool = False) -> list[str]:
    """What this machine cannot do of what `stage` asks, each with its fix; empty when it can run."""
    module = get(stage.type)
    if hasattr(module, "problems"):
        return module.problems(stage, pipeline, launched)
    return requirements.problems(stage, pipeline, launched) if trains(stage.type) else []


def notes(stage: StageConfig, pipeline: PipelineConfig) -> list[str]:
    """What `validate` should tell about a stage's GPU options that is not a problem."""
    module = get(stage.type)
    if hasattr(module, "notes"):
        return module.notes(stage, pipeline)
    return requirements.notes(stage, pipeline) if trains(stage.type) else []


def run(ctx: StageContext) -> dict:
    return get(ctx.stage.type).run(ctx)


@dataclass
class StageContext:
    """What a stage needs from the pipeline: its config, input model and where to write."""

    pipeline: PipelineConfig
    stage: StageConfig
    model_path: str  # the input model: a model dir, an adapter dir, or a hub id
    stage_dir: Path

    @property
    def model_dir(self) -> Path:
        return self.stage_dir / "model"

    @property
    def checkpoints_dir(self) -> Path:
        return self.stage_dir / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.stage_dir / "trainer_log.jsonl"

    @property
    def metrics_path(self) -> Path:
        return self.stage_dir / "metrics.json"
