"""Direct preference optimisation on preference pairs, with TRL's DPOTrainer.

The policy learns to raise the chosen answer's likelihood against the rejected
one's, relative to a frozen reference: the stage's input model, an earlier
LoRA stage's adapter merged in (training/preference.py says how). Pairs come
from every preference format; ties are dropped and counted. The stage's
`trainer:` block is passed to `trl.DPOConfig` as is, `loss_type` (sigmoid,
ipo, hinge, robust, ...) and `beta` included; TRL logs reward accuracy and
margins (chosen vs rejected) at each evaluation, on the held-out pairs.
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


def plan(stage, pipeline, output_dir) -> Plan:
    from trl import DPOConfig, DPOTrainer

    p = Plan(*trainer_args(stage, pipeline, DPOConfig, output_dir, DEFAULTS))
    check_loss_types(stage, p.args.loss_type, DPOTrainer)
    return p


def run(ctx: StageContext) -> dict:
    from trl import DPOTrainer

    return train_on_pairs(DPOTrainer, ctx, plan, "DPO", reference=True, needs_prompt=False)
