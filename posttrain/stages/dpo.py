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

import dataclasses
import logging
from typing import ClassVar, Literal

from posttrain.config.schema import HeldOutDataStage
from posttrain.data.pairs import load_pairs
from posttrain.stages import StageContext
from posttrain.training import requirements
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer, train_and_held_out
from posttrain.training.preference import build_trainer, check_loss_types

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
    from trl import DPOConfig, DPOTrainer

    p = Plan(*trainer_args(stage, pipeline, DPOConfig, output_dir, DEFAULTS))
    check_loss_types(stage, p.args.loss_type, DPOTrainer)
    return p


def pairs_dataset(pairs: list[dict]):
    """TRL's explicit-prompt conversational preference rows."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                              for p in pairs])


def run(ctx: StageContext) -> dict:
    from trl import DPOTrainer

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
    trainer = build_trainer(DPOTrainer, ctx, p.args, tokenizer, pairs_dataset(train_pairs), evaluation)
    metrics = train_and_save(trainer, ctx, tokenizer, p.resume, evaluate=evaluation is not None)
    metrics.update(train_examples=len(train_pairs), eval_examples=len(eval_pairs), ties_dropped=sum(ties))
    return metrics
