"""The YAML language posttrain reads: `load_config` and the config types, from one place.

schema.py has the types every pipeline and stage share, messages.py turns pydantic's errors into lines that
name each key as written, load.py reads a file (or a LLaMA-Factory recipe) and types each stage through the
stage table. A stage type's own fields are its module's `Config` (posttrain/stages/<type>.py).
"""

from __future__ import annotations

from posttrain.config.load import apply_override, from_dict, load_config, load_raw
from posttrain.config.yaml_text import parse_yaml
from posttrain.config.messages import error_lines
from posttrain.config.schema import (DataSpec, LaunchSpec, LoraSpec, PipelineConfig, RewardSpec, StageConfig, Strict,
                                     TrainingStage, reward_names, trainer_config_class)

__all__ = ["DataSpec", "LaunchSpec", "LoraSpec", "PipelineConfig", "RewardSpec", "StageConfig", "Strict",
           "TrainingStage", "apply_override", "error_lines", "from_dict", "load_config", "load_raw", "parse_yaml",
           "reward_names", "trainer_config_class"]
