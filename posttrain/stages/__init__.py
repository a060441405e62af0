"""The stage table: a stage type's name -> the function that runs it.

Adding a stage type touches its module, this table, its config class in
config.STAGE_CONFIGS, and a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from posttrain.config import PipelineConfig, StageConfig


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


def _sft(ctx: StageContext) -> dict:
    from posttrain.stages import sft

    return sft.run(ctx)


def _grpo(ctx: StageContext) -> dict:
    from posttrain.stages import grpo

    return grpo.run(ctx)


STAGES: dict[str, Callable[[StageContext], dict]] = {"sft": _sft, "grpo": _grpo}


def _process_reward(ctx: StageContext) -> dict:
    from posttrain.stages import process_reward

    return process_reward.run(ctx)


STAGES["process_reward"] = _process_reward


def _reward_model(ctx: StageContext) -> dict:
    from posttrain.stages import reward_model

    return reward_model.run(ctx)


STAGES["reward_model"] = _reward_model


def _eval(ctx: StageContext) -> dict:
    from posttrain.stages import eval as eval_stage  # `eval` is the stage type's name; keep the builtin unshadowed

    return eval_stage.run(ctx)


STAGES["eval"] = _eval


def _export(ctx: StageContext) -> dict:
    from posttrain.stages import export

    return export.run(ctx)


STAGES["export"] = _export
