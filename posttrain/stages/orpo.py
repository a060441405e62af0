"""ORPO on preference pairs, with TRL's ORPOTrainer (trl.experimental.orpo): SFT and preference in one stage.

ORPO (Hong et al. 2024, arXiv:2403.07691) adds to the chosen answer's
negative log-likelihood an odds-ratio term, −λ·log σ(log(odds(chosen) /
odds(rejected))), where odds(y) = p/(1−p) and p is the answer's per-token
mean likelihood, exp(mean log-prob). The NLL keeps the model on the chosen
answers, so ORPO can start from a base model: one stage instead of SFT then
DPO, and no reference model (nothing frozen in memory, no second forward
pass). `beta` in the stage's `trainer:` block is the paper's λ; the block is
passed to ORPOConfig as is. TRL takes the NLL over the whole chosen
conversation, prompt included, as the paper's own code does. Ties are
dropped and counted; TRL logs reward accuracy and margins (its reward is
β·mean log-prob), the log odds ratio and the NLL at each evaluation.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from posttrain.config.schema import HeldOutDataStage
from posttrain.stages import StageContext
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.preference import Plan, train_on_pairs

RECORD = "preference"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """ORPO on preference pairs; `trainer:` feeds ORPOConfig (beta is the paper's λ, max_length, ...).

    No reference model; ties are dropped.
    """

    trainer_class: ClassVar[str] = "trl.experimental.orpo:ORPOConfig"

    type: Literal["orpo"]
    finetuning: Literal["full", "lora", "qlora", "freeze", "oft"] = "full"
    template: str | None = None


# ORPOConfig's learning rate default (1e-6) suits 7 B models; posttrain keeps TRL's, and its own max_length.
# TRL's pair collator needs the text columns kept, and warns each run it turns remove_unused_columns off itself.
DEFAULTS = {**COMMON, "max_length": 1024, "remove_unused_columns": False}


def plan(stage, pipeline, output_dir) -> Plan:
    from trl.experimental.orpo import ORPOConfig

    return Plan(*trainer_args(stage, pipeline, ORPOConfig, output_dir, DEFAULTS))


def run(ctx: StageContext) -> dict:
    from trl.experimental.orpo import ORPOTrainer

    return train_on_pairs(ORPOTrainer, ctx, plan, "ORPO", reference=False)
