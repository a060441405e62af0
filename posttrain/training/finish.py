"""Train from the right checkpoint and save the result atomically: what every trainer-backed stage ends with.

A stage resumes from its newest whole checkpoint; one killed after its last
step was checkpointed (but before the model was saved) loads that checkpoint
instead of training past max_steps. The model and tokenizer are written to
`model.tmp` and renamed to `model`, so a kill never leaves half a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.models.loading import is_adapter_dir
from posttrain.runs.ownership import remove_tree
from posttrain.training.checkpoints import latest_checkpoint
from posttrain.training import optimizers
from posttrain.training.logs import plot_loss


def _explicit(resume) -> bool:
    """A checkpoint path was named; otherwise (`auto`) the stage's newest whole checkpoint is used."""
    return resume not in (None, "auto", True)


def check_resume(resume, where: str) -> None:
    if _explicit(resume) and not (Path(str(resume)) / "trainer_state.json").exists():
        raise PosttrainError(f"{where}.resume_from_checkpoint: {resume}: not a checkpoint directory "
                             "(no trainer_state.json)")


def train_and_save(trainer, ctx, tokenizer, resume=None, evaluate: bool = False) -> dict:
    # under several processes every rank runs this; only the Trainer's writer (rank 0) touches files
    writer = trainer.args.should_save
    optimizers.install(trainer, ctx.stage)
    checkpoint = resume if _explicit(resume) else latest_checkpoint(ctx.checkpoints_dir, prune=writer)
    initial_adapter = _keep_initial_adapter(trainer, ctx, fresh=checkpoint is None, writer=writer)
    if checkpoint and _finished(checkpoint):
        # killed after the last step was saved: training again would run past max_steps
        if getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False):
            # the engine loads its sharded state only inside train(); outside it, saving fails deep in transformers
            raise PosttrainError(f"stage {ctx.stage.name}: it was stopped after its last checkpoint ({checkpoint}) "
                                 "and before its model was written, and a DeepSpeed or FSDP checkpoint cannot be "
                                 "saved as the model without training. Fix: --force to train the stage again, or "
                                 f"use the weights {checkpoint} holds")
        trainer._load_from_checkpoint(str(checkpoint))
        metrics = {"train_loss": _last(checkpoint, "loss"), "resumed_from_final_checkpoint": 1}
    else:
        metrics = dict(trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None).metrics)
    if evaluate:
        last_eval = next((e for e in reversed(trainer.state.log_history) if "eval_loss" in e), None)
        if last_eval is None or last_eval.get("step") != trainer.state.global_step:
            last_eval = trainer.evaluate()
        metrics.update({k: v for k, v in last_eval.items() if k.startswith("eval_")})

    tmp = ctx.stage_dir / "model.tmp"
    if writer:
        remove_tree(tmp, ctx.stage_dir)
    trainer.save_model(str(tmp))  # on every rank: DeepSpeed and FSDP gather the weights together; rank 0 writes
    if writer:
        if initial_adapter is not None:
            # the trained adapter less its initial one, as a plain LoRA adapter (rank doubled) on the unchanged base
            trainer.model.save_pretrained(str(tmp), path_initial_model_for_weight_conversion=str(initial_adapter))
        tokenizer.save_pretrained(str(tmp))
        _name_input_adapter(tmp, ctx.model_path)
        remove_tree(ctx.model_dir, ctx.stage_dir)
        tmp.rename(ctx.model_dir)
        if getattr(ctx.stage, "plot_loss", False):
            plot_loss(ctx.log_path, ctx.stage_dir / "training_loss.png")
    trainer.accelerator.wait_for_everyone()  # no rank leaves before the model is in place
    return metrics


# LoRA initialisations that also rewrite the base weights (peft subtracts the initial adapter from them)
_BASE_CHANGING_INITS = ("pissa", "olora", "corda")


def _keep_initial_adapter(trainer, ctx, *, fresh: bool, writer: bool) -> Path | None:
    """With a PiSSA, OLoRA or CorDA initialisation, the adapter as it starts, saved before the first step.

    Those initialisations move part of each base weight into the adapter, so the trained adapter is right only on
    a base nobody saves; every later stage, eval and export loads it on the original base. peft converts it into
    an ordinary LoRA adapter for that base, given the initial one (LLaMA-Factory's pissa_convert does the same)."""
    configs = getattr(getattr(trainer, "model", None), "peft_config", None)
    init = getattr(configs.get("default"), "init_lora_weights", True) if isinstance(configs, dict) else True
    if not (isinstance(init, str) and init.startswith(_BASE_CHANGING_INITS)):
        return None
    initial = ctx.stage_dir / "initial_adapter"
    if writer and (fresh or not initial.exists()):  # a resumed run keeps the adapter its first steps began from
        remove_tree(initial, ctx.stage_dir)
        trainer.model.save_pretrained(str(initial))
    return initial


def _name_input_adapter(saved: Path, input_model: str) -> None:
    """A LoRA stage trained on an earlier LoRA stage's merged output: peft names the first base, which lacks the
    earlier adapter; name the input adapter instead, so loading merges the chain in order."""
    config_path = saved / "adapter_config.json"
    if not (config_path.exists() and is_adapter_dir(input_model)):
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(input_model)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _state(checkpoint) -> dict:
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())


def _finished(checkpoint) -> bool:
    state = _state(checkpoint)
    return 0 < state.get("max_steps", 0) <= state.get("global_step", 0)


def _last(checkpoint, key: str):
    return next((e[key] for e in reversed(_state(checkpoint).get("log_history", [])) if key in e), None)
