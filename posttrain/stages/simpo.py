"""SimPO on preference pairs, with TRL's CPOTrainer (trl.experimental.cpo) and its `simpo` loss: no reference.

SimPO (Meng, Xia and Chen 2024, arXiv:2405.14734) takes as an answer's
reward its length-normalised log-probability, β/|y|·log π(y|x), and asks the
chosen answer's to beat the rejected one's by a margin γ:
L = −log σ(β/|y_w|·log π(y_w|x) − β/|y_l|·log π(y_l|x) − γ). The reward
is the policy's own, so there is no reference model; per token, so a long
answer does not win by being long. TRL computes it in CPOTrainer with
`loss_type: simpo` (γ is CPOConfig's `simpo_gamma`) and, with `cpo_alpha`
above 0, adds CPO's NLL of the chosen answer, which the paper does not have:
posttrain sets cpo_alpha to 0. The stage's `trainer:` block is passed to
CPOConfig over posttrain's defaults. Ties are dropped and counted; TRL logs
reward accuracy and margins (β·mean log-prob) at each evaluation.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from posttrain.config.schema import HeldOutDataStage
from posttrain.errors import PosttrainError
from posttrain.stages import StageContext
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.preference import Plan, check_loss_types, train_on_pairs

RECORD = "preference"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """SimPO on preference pairs; `trainer:` feeds CPOConfig (beta, simpo_gamma, max_length, ...).

    No reference model; ties are dropped.
    """

    trainer_class: ClassVar[str] = "trl.experimental.cpo:CPOConfig"

    type: Literal["simpo"]
    finetuning: Literal["full", "lora", "qlora", "freeze", "oft"] = "full"
    template: str | None = None


# CPOConfig defaults to CPO (sigmoid loss plus the NLL term, cpo_alpha 1) and to DPO's β of 0.1, a scale made for
# summed log-probabilities: SimPO's reward is a per-token mean, and the paper trains with β = 2 and γ = β/2
# (its Llama-3 base setting). The learning rate stays TRL's (1e-6, for 7 B models). TRL's pair collator needs the
# text columns kept, and warns each run it turns remove_unused_columns off itself.
DEFAULTS = {**COMMON, "max_length": 1024, "remove_unused_columns": False,
            "loss_type": "simpo", "cpo_alpha": 0.0, "beta": 2.0, "simpo_gamma": 1.0}


def plan(stage, pipeline, output_dir) -> Plan:
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    loss_type = stage.trainer.get("loss_type", "simpo")
    if loss_type != "simpo":
        raise PosttrainError(f"stages.{stage.name}.trainer.loss_type: {loss_type!r}: a simpo stage trains SimPO's "
                             "loss only (AlphaPO's reward shape is trainer.alpha). For sigmoid, hinge or ipo, "
                             "CPOTrainer's other losses, use type: dpo, whose trainer computes them")
    p = Plan(*trainer_args(stage, pipeline, CPOConfig, output_dir, DEFAULTS))
    check_loss_types(stage, p.args.loss_type, CPOTrainer)  # that the installed TRL still computes it
    return p


def run(ctx: StageContext) -> dict:
    from trl.experimental.cpo import CPOTrainer

    return train_on_pairs(CPOTrainer, ctx, plan, "SimPO", reference=False)
