"""Scoring with trained reward models: `posttrain score` and reward models used as GRPO rewards.

`load_scorer` looks at a model directory and returns the scorer for its kind:
a sequence classifier with one output is a Bradley-Terry reward model (one
score per response); a token classifier is a process reward model (one
probability per step, see `posttrain.scoring.process`). Both are used the
same way by the CLI and by the GRPO stage, so a reward model is scored
identically in evaluation and in training.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.scoring.bradley_terry import BradleyTerryScorer
from posttrain.scoring.process import ProcessScorer


def model_kind(path: str | Path) -> str:
    """`bradley_terry` or `process`, from config.json's architectures (an adapter's task type)."""
    root = Path(path)
    adapter = root / "adapter_config.json"
    if adapter.exists():
        task = json.loads(adapter.read_text()).get("task_type")
        kinds = {"SEQ_CLS": "bradley_terry", "TOKEN_CLS": "process"}
        if task in kinds:
            return kinds[task]
        raise PosttrainError(f"{path}: a LoRA adapter for {task}; expected a reward model (SEQ_CLS or TOKEN_CLS)")
    config = root / "config.json"
    if not config.exists():
        raise PosttrainError(f"{path}: no config.json; expected a reward model directory "
                             "(the `model` folder of a reward_model or process_reward stage)")
    architectures = json.loads(config.read_text()).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "bradley_terry"
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return "process"
    raise PosttrainError(f"{path}: architectures {architectures or 'missing'}; expected a reward model "
                         "(*ForSequenceClassification, or *ForTokenClassification for a process reward model)")


def load_scorer(path: str | Path, **kwargs):
    """The scorer for the reward model at `path`."""
    kind = model_kind(path)
    if kind == "process":
        return ProcessScorer(str(path), **kwargs)

    return BradleyTerryScorer(str(path), **kwargs)


__all__ = ["load_scorer", "model_kind"]
