"""Trainer settings every stage defaults the same way, where posttrain differs from TRL, and why."""

from __future__ import annotations

import dataclasses
import os

import torch

from posttrain import machine as gpu
from posttrain.errors import PosttrainError
from posttrain.models.loading import resolve_dtype, training_dtype
from posttrain.runs.secrets import pickled_without_secrets
from posttrain.training import engines
from posttrain.training.finish import check_resume

COMMON = {"report_to": "none", "save_total_limit": 2}  # trackers are opt-in; checkpoints are for resume


def apply_common(settings: dict, stage, pipeline, config_class, where: str):
    """Activation checkpointing off unless asked, precision from the pipeline's dtype, the pipeline's seed.

    Takes `resume_from_checkpoint` out of `settings` (the stage resumes itself) and returns it, checked.
    """
    resume = settings.pop("resume_from_checkpoint", None)
    check_resume(resume, where)
    if "model_init_kwargs" in settings:  # TRL would warn and drop them: the stage hands it a loaded model
        raise PosttrainError(f"{where}.model_init_kwargs: posttrain loads the model itself, so TRL would ignore "
                             "these. Use the pipeline's dtype, attn_implementation and trust_remote_code, and the "
                             "stage's finetuning: qlora for a 4-bit base")
    # TRL turns activation checkpointing on; it costs ~30 % speed and small models do not need it.
    # transformers 5 renamed gradient_checkpointing, and setting the old name warns.
    names = {f.name for f in dataclasses.fields(config_class)}
    if "gradient_checkpointing" not in settings:
        settings.setdefault("activation_checkpointing" if "activation_checkpointing" in names
                            else "gradient_checkpointing", False)
    dtype = resolve_dtype(training_dtype(pipeline.dtype))
    settings.setdefault("bf16", dtype == torch.bfloat16)
    # auto on a GPU without native bf16: fp32 weights (training_dtype) under fp16 autocast
    settings.setdefault("fp16", dtype == torch.float16 or (pipeline.dtype == "auto" and gpu.cuda()
                                                          and not gpu.bf16_native()))
    if any(settings.get(k) for k in ("bf16", "fp16", "bf16_full_eval", "fp16_full_eval")) and not gpu.cuda():
        settings.setdefault("use_cpu", True)  # transformers refuses half precision on CPU unless told so
    settings.setdefault("seed", pipeline.seed)
    _distributed(settings, stage)
    return resume


def _distributed(settings: dict, stage) -> None:
    """The stage's DeepSpeed/FSDP (a ConfigError where this machine lacks them, so `validate` lists it); gloo for
    CPU processes, which accelerate would otherwise hand to MPI where torch has it."""
    if hasattr(stage, "deepspeed"):
        engines.apply(settings, stage)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        settings.setdefault("ddp_backend", "gloo")


def build_config(config_class, where: str, **kwargs):
    """The TRL config, with its own checks turned into a posttrain error naming the stage's trainer block; a
    pickle of it (training_args.bin) leaves the secrets out."""
    try:
        args = config_class(**kwargs)
    except (TypeError, ValueError) as e:
        raise PosttrainError(f"{where}: {e}") from None
    return pickled_without_secrets(args)  # transformers saves it beside every model and checkpoint


def trainer_args(stage, pipeline, config_class, output_dir, defaults: dict = COMMON):
    """(the stage's trainer config, the checkpoint to resume from): `defaults` under the stage's `trainer:`
    block, the settings every stage shares (apply_common), evaluation each epoch when there is held-out data
    and no eval_steps. What `plan` is for a stage that adds nothing of its own."""
    settings = {**defaults, **stage.trainer}
    where = f"stages.{stage.name}.trainer"
    resume = apply_common(settings, stage, pipeline, config_class, where)
    if getattr(stage, "eval_data", None) or getattr(stage, "val_size", 0):
        settings.setdefault("eval_strategy", "steps" if "eval_steps" in settings else "epoch")
    return build_config(config_class, where, output_dir=str(output_dir), **settings), resume
