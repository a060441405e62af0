"""What the stages that learn against a frozen reference (dpo, kto) share: the reference, and the loss types.

The reference is the stage's input model, whatever that is. After a LoRA SFT
stage its adapter is merged into the base first, so the policy starts from
the SFT model and the reference *is* the SFT model, never the bare base. With
a new LoRA adapter TRL gets the reference by switching that adapter off; with
full fine-tuning posttrain loads the input a second time, because TRL would
rebuild the reference from `model.config._name_or_path`, which after a merged
adapter names the bare base (the trap LLaMA-Factory's issue #8974 reports as
a DPO loss of 0 on an SFT adapter). A precomputed reference is the policy
before its first step, which is the input already.
"""

from __future__ import annotations

import functools
import inspect
import re

from posttrain.errors import PosttrainError, closest
from posttrain.models.loading import load_model, lora_config, training_dtype
from posttrain.training.logs import TrainerLogCallback


def build_trainer(trainer_class, ctx, args, tokenizer, train, evaluation):
    """`trainer_class` (trl.DPOTrainer, trl.KTOTrainer) on the input model, its reference the input model too."""
    stage, pipeline = ctx.stage, ctx.pipeline

    def input_model(**extra):
        return load_model(ctx.model_path, dtype=training_dtype(pipeline.dtype),
                          trust_remote_code=pipeline.trust_remote_code,
                          attn_implementation=pipeline.attn_implementation, **extra)

    adapter = stage.finetuning in ("lora", "qlora")
    model = input_model(quantize_4bit=stage.finetuning == "qlora")
    reference = None if adapter or args.precompute_ref_log_probs else input_model()
    return trainer_class(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=lora_config(stage.lora) if adapter else None,
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )


@functools.lru_cache(maxsize=None)
def loss_types(trainer_class) -> tuple[str, ...]:
    """The loss types the installed TRL trainer computes, read from its source (its docs lag behind it)."""
    return tuple(dict.fromkeys(re.findall(r'loss_type == "(\w+)"', inspect.getsource(trainer_class))))


def check_loss_types(stage, names, trainer_class) -> None:
    """Each of `names` is a loss `trainer_class` computes: TRL itself would say so only at the first step."""
    known = loss_types(trainer_class)
    unknown = [name for name in ([names] if isinstance(names, str) else names) if name not in known]
    if unknown:
        raise PosttrainError(f"stages.{stage.name}.trainer.loss_type: unknown {', '.join(map(repr, unknown))}; "
                             f"expected one of {', '.join(known)}{closest(unknown[0], known)}")
