"""Direct preference optimisation on preference pairs, with TRL's DPOTrainer.

The policy learns to raise the chosen answer's likelihood against the rejected
one's, relative to a frozen reference: the stage's input model, an earlier
LoRA stage's adapter merged in (training/preference.py says how). Pairs come
from every preference format; ties are dropped and counted. The stage's
`trainer:` block is passed to `trl.DPOConfig` as is, `loss_type` (sigmoid,
ipo, hinge, robust, ...) and `beta` included; TRL logs reward accuracy and
margins (chosen vs rejected) at each evaluation, on the held-out pairs. From
two epochs on the reference's log-probs are precomputed (a measured default,
PRECOMPUTE_FROM_EPOCHS) unless the trainer block sets precompute_ref_log_probs.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from posttrain.config.schema import HeldOutDataStage
from posttrain.stages import StageContext
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.preference import Plan, check_loss_types, train_on_pairs

RECORD = "preference"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """DPO on preference pairs; `trainer:` feeds trl.DPOConfig (loss_type, beta, precompute_ref_log_probs, ...).

    The reference model is the stage's input model (an earlier LoRA stage's adapter merged in); ties are dropped.
    """

    trainer_class: ClassVar[str] = "trl:DPOConfig"

    type: Literal["dpo"]
    finetuning: Literal["full", "lora", "qlora", "freeze", "oft"] = "full"
    template: str | None = None


DEFAULTS = {**COMMON, "max_length": 1024}
# From this many epochs on, the reference's log-probs are computed once before training, unless the trainer block
# says otherwise: one reference forward pass over the data costs about what a quarter of an epoch's steps save by
# skipping it (bench/dpo_step_time.py: 1 epoch 8 % slower in all, 3 epochs 8 % faster; docs/benchmarks.md).
PRECOMPUTE_FROM_EPOCHS = 2


def plan(stage, pipeline, output_dir) -> Plan:
    from trl import DPOConfig, DPOTrainer

    p = Plan(*trainer_args(stage, pipeline, DPOConfig, output_dir, DEFAULTS))
    check_loss_types(stage, p.args.loss_type, DPOTrainer)
    args = p.args
    if ("precompute_ref_log_probs" not in (stage.trainer or {}) and not args.sync_ref_model and args.max_steps <= 0
            and args.num_train_epochs >= PRECOMPUTE_FROM_EPOCHS):
        args.precompute_ref_log_probs = True
    return p


def run(ctx: StageContext) -> dict:
    from trl import DPOTrainer

    return train_on_pairs(DPOTrainer, ctx, plan, "DPO", reference=True, needs_prompt=False)
