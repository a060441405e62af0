"""What the preference stages share: the reference (dpo, kto), and run() for the pairs stages without one.

The reference is the stage's input model, whatever that is. After a LoRA SFT
stage its adapter is merged into the base first, so the policy starts from
the SFT model and the reference *is* the SFT model, never the bare base. With
a new LoRA adapter TRL gets the reference by switching that adapter off; with
full fine-tuning posttrain loads the input a second time, because TRL would
rebuild the reference from `model.config._name_or_path`, which after a merged
adapter names the bare base (the trap LLaMA-Factory's issue #8974 reports as
a DPO loss of 0 on an SFT adapter). A precomputed reference is the policy
before its first step, which is the input already.

ORPO and SimPO (stages orpo, simpo) have no reference: their trainers take
none, and `train_on_pairs` is the whole of their run(), from the pairs to the
saved model.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import re

from posttrain.data.pairs import load_pairs
from posttrain.errors import PosttrainError, closest
from posttrain.models.finetuning import ADAPTERS, peft_config, prepare
from posttrain.models.loading import load_model, training_dtype
from posttrain.training import requirements
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer, train_and_held_out
from posttrain.training.logs import TrainerLogCallback

log = logging.getLogger("posttrain")


@dataclasses.dataclass
class Plan:
    args: object  # the stage's TRL config (trl.experimental.orpo.ORPOConfig, trl.experimental.cpo.CPOConfig)
    resume: str | None


def build_trainer(trainer_class, ctx, args, tokenizer, train, evaluation, *, reference: bool = True):
    """`trainer_class` (trl.DPOTrainer, trl.KTOTrainer) on the input model, its reference the input model too;
    with `reference=False` (ORPO, CPO/SimPO, whose trainers take no `ref_model`) the input model alone."""
    stage, pipeline = ctx.stage, ctx.pipeline

    def input_model(**extra):
        return load_model(ctx.model_path, dtype=training_dtype(pipeline.dtype),
                          trust_remote_code=pipeline.trust_remote_code,
                          attn_implementation=pipeline.attn_implementation, **extra)

    adapter = peft_config(stage)  # lora, qlora, oft; freeze trains some of the model's own layers
    model = prepare(input_model(quantize_4bit=stage.finetuning == "qlora"), stage)
    extra = {}
    if reference:  # a second copy, unless TRL switches the new adapter off or precomputes the reference
        extra["ref_model"] = (None if stage.finetuning in ADAPTERS or args.precompute_ref_log_probs
                              else input_model())
    return trainer_class(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=adapter,
        callbacks=[TrainerLogCallback(ctx.log_path)],
        **extra,
    )


def pairs_dataset(pairs: list[dict]):
    """TRL's explicit-prompt conversational preference rows."""
    from datasets import Dataset

    return Dataset.from_list([{key: pair[key] for key in ("prompt", "chosen", "rejected")} for pair in pairs])


def train_on_pairs(trainer_class, ctx, plan, method: str, *, reference: bool, needs_prompt: bool = True) -> dict:
    """A pairs stage's run(), from its pairs to its saved model: `trainer_class` (ORPOTrainer, CPOTrainer, ...)
    with the stage module's `plan`, with a reference or without one (build_trainer); ties dropped and counted.
    `method` names the loss in what is logged; `needs_prompt`: pairs without a prompt are refused."""
    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(requirements.problems(stage, pipeline))
    p = plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    ties = []

    def load(specs):
        pairs, dropped = load_pairs(specs, f"stage {stage.name} data", why=f"{method} needs a preferred answer")
        ties.append(dropped)
        # TRL's chat-template step reads the prompt's last turn, and fails with an IndexError on an empty one
        promptless = sum(not pair["prompt"] for pair in pairs) if needs_prompt else 0
        if promptless:
            raise PosttrainError(f"stage {stage.name} data: {promptless} pair(s) have no prompt (their answers "
                                 f"share no opening turn); {trainer_class.__name__} needs the prompt both answer")
        return pairs

    train_pairs, held_out = train_and_held_out(stage, pipeline, load)
    if any(pair["margin"] is not None for pair in train_pairs):
        log.warning("stage %s: the pairs' margins are not used by %s's loss (a reward_model stage uses them)",
                    stage.name, method)
    evaluation = pairs_dataset(held_out) if held_out else None
    trainer = build_trainer(trainer_class, ctx, p.args, tokenizer, pairs_dataset(train_pairs), evaluation,
                            reference=reference)
    metrics = train_and_save(trainer, ctx, tokenizer, p.resume, evaluate=evaluation is not None)
    metrics.update(train_examples=len(train_pairs), eval_examples=len(held_out), ties_dropped=sum(ties))
    return metrics


@functools.lru_cache(maxsize=None)
def loss_types(trainer_class) -> tuple[str, ...]:
    """The loss types the installed TRL trainer computes, read from its source (its docs lag behind it); a
    subclass's are its own and its bases'."""
    found = []
    for cls in trainer_class.__mro__:
        try:
            found += re.findall(r'loss_type == "(\w+)"', inspect.getsource(cls))
        except (OSError, TypeError):  # a class without Python source (object, a C extension)
            continue
    return tuple(dict.fromkeys(found))


def check_loss_types(stage, names, trainer_class) -> None:
    """Each of `names` is a loss `trainer_class` computes: TRL itself would say so only at the first step."""
    known = loss_types(trainer_class)
    unknown = [name for name in ([names] if isinstance(names, str) else names) if name not in known]
    if unknown:
        raise PosttrainError(f"stages.{stage.name}.trainer.loss_type: unknown {', '.join(map(repr, unknown))}; "
                             f"expected one of {', '.join(known)}{closest(unknown[0], known)}")
