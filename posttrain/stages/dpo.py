"""Direct preference optimisation on preference pairs, with TRL's DPOTrainer.

The policy learns to raise the chosen answer's likelihood against the
rejected one's, relative to a frozen reference. The reference is the stage's
input model, whatever that is: after a LoRA SFT stage its adapter is merged
into the base first, so the policy starts from the SFT model and the
reference *is* the SFT model, never the bare base (with `finetuning: lora`
TRL gets the reference by switching the new adapter off; with full
fine-tuning posttrain loads the input a second time, since TRL would reload
the base named in the model's config). Pairs come from every preference
format; ties are dropped and counted. The stage's `trainer:` block is passed
to `trl.DPOConfig` as is, `loss_type` (sigmoid, ipo, hinge, robust, ...) and
`beta` included; TRL logs reward accuracy and margins (chosen vs rejected) at
each evaluation, on the held-out pairs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import re
from typing import ClassVar, Literal

from posttrain.config.schema import HeldOutDataStage
from posttrain.data.pairs import load_pairs
from posttrain.errors import PosttrainError, closest
from posttrain.models.loading import load_model, lora_config, training_dtype
from posttrain.stages import StageContext
from posttrain.training import requirements
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer, train_and_held_out
from posttrain.training.logs import TrainerLogCallback

RECORD = "preference"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """DPO on preference pairs; `trainer:` feeds trl.DPOConfig (loss_type, beta, precompute_ref_log_probs, ...).

    The reference model is the stage's input model (an earlier LoRA stage's adapter merged in); ties are dropped.
    """

    trainer_class: ClassVar[str] = "trl:DPOConfig"

    type: Literal["dpo"]
    finetuning: Literal["full", "lora", "qlora"] = "full"
    template: str | None = None


log = logging.getLogger("posttrain")

DEFAULTS = {**COMMON, "max_length": 1024}


@dataclasses.dataclass
class Plan:
    args: object  # trl.DPOConfig
    resume: str | None


def plan(stage, pipeline, output_dir) -> Plan:
    from trl import DPOConfig

    p = Plan(*trainer_args(stage, pipeline, DPOConfig, output_dir, DEFAULTS))
    unknown = [name for name in p.args.loss_type if name not in loss_types()]
    if unknown:  # TRL itself would say so only at the first training step
        raise PosttrainError(f"stages.{stage.name}.trainer.loss_type: unknown {', '.join(map(repr, unknown))}; "
                             f"expected one of {', '.join(loss_types())}{closest(unknown[0], loss_types())}")
    return p


@functools.lru_cache(maxsize=1)
def loss_types() -> tuple[str, ...]:
    """The loss types the installed TRL's DPOTrainer computes, read from its loss function."""
    from trl import DPOTrainer

    return tuple(dict.fromkeys(re.findall(r'loss_type == "(\w+)"', inspect.getsource(DPOTrainer._compute_loss))))


def pairs_dataset(pairs: list[dict]):
    """TRL's explicit-prompt conversational preference rows; a margin is DPO's to ignore, so it is said."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                              for p in pairs])


def build_trainer(ctx: StageContext, p: Plan, tokenizer, train, evaluation):
    """The DPOTrainer on the input model, its reference the input model too (see the module's docstring)."""
    from trl import DPOTrainer

    stage, pipeline = ctx.stage, ctx.pipeline

    def input_model(**extra):
        return load_model(ctx.model_path, dtype=training_dtype(pipeline.dtype),
                          trust_remote_code=pipeline.trust_remote_code,
                          attn_implementation=pipeline.attn_implementation, **extra)

    adapter = stage.finetuning in ("lora", "qlora")
    model = input_model(quantize_4bit=stage.finetuning == "qlora")
    # full fine-tuning: TRL would build the reference from model.config's name, which after a merged LoRA stage is
    # the bare base; a precomputed reference is the policy before its first step, which is the input already
    reference = None if adapter or p.args.precompute_ref_log_probs else input_model()
    return DPOTrainer(
        model=model,
        ref_model=reference,
        args=p.args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=lora_config(stage.lora) if adapter else None,
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )


def run(ctx: StageContext) -> dict:
    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(requirements.problems(stage, pipeline))
    p = plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    ties = []

    def load(specs):
        pairs, dropped = load_pairs(specs, f"stage {stage.name} data", why="DPO needs a preferred answer")
        ties.append(dropped)
        return pairs

    train_pairs, eval_pairs = train_and_held_out(stage, pipeline, load)
    if any(pair["margin"] is not None for pair in train_pairs):
        log.warning("stage %s: the pairs' margins are not used by DPO's loss (a reward_model stage uses them)",
                    stage.name)
    evaluation = pairs_dataset(eval_pairs) if eval_pairs else None
    trainer = build_trainer(ctx, p, tokenizer, pairs_dataset(train_pairs), evaluation)
    metrics = train_and_save(trainer, ctx, tokenizer, p.resume, evaluate=evaluation is not None)
    metrics.update(train_examples=len(train_pairs), eval_examples=len(eval_pairs), ties_dropped=sum(ties))
    return metrics
