"""What a trainer-backed stage reads before it trains: its tokenizer, and its training and held-out records.

Every such stage opens the same way: held-out records are `eval_data`, else `val_size` of `data` split off with
the pipeline's seed; a stage with no training record stops with its name.
"""

from __future__ import annotations

from typing import Callable

from posttrain.data.split import split_off
from posttrain.errors import PosttrainError
from posttrain.models.loading import load_tokenizer


def stage_tokenizer(ctx):
    """The input model's tokenizer, with the stage's (else the pipeline's) chat template where it has none."""
    pipeline = ctx.pipeline
    return load_tokenizer(ctx.model_path, template=getattr(ctx.stage, "template", None) or pipeline.template,
                          trust_remote_code=pipeline.trust_remote_code)


def train_and_held_out(stage, pipeline, load: Callable[[list], list]) -> tuple[list, list]:
    """`load` of the stage's data and of its held-out data (eval_data, else val_size of data)."""
    train = load(stage.data)
    held_out = load(stage.eval_data) if stage.eval_data else []
    if stage.val_size and not held_out:
        train, held_out = split_off(train, stage.val_size, pipeline.seed)
    if not train:
        raise PosttrainError(f"stage {stage.name}: the training data holds no records")
    return train, held_out
