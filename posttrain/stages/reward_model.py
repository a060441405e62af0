"""A Bradley-Terry reward model from preference pairs, with TRL's RewardTrainer.

The model becomes a sequence classifier with one output and learns
-logsigmoid(r_chosen - r_rejected) (minus each pair's `margin` when every
pair has one). posttrain reads preference records from any supported format,
drops ties (Bradley-Terry has no tie; the count is printed), renders each
response with the chat template exactly as `posttrain score` and a GRPO
stage will (scoring/bradley_terry.encode), and reports TRL's eval accuracy
(chosen scored above rejected) and mean margin at every evaluation. The
stage's `trainer:` block is passed to `trl.RewardConfig` as is.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Literal

from transformers import set_seed
from trl import RewardConfig, RewardTrainer

from posttrain.config.schema import HeldOutDataStage
from posttrain.data.pairs import load_pairs
from posttrain.data.split import split_off
from posttrain.errors import PosttrainError
from posttrain.models.finetuning import peft_config, prepare
from posttrain.models.loading import load_model, training_dtype
from posttrain.scoring.bradley_terry import encode
from posttrain.stages import StageContext
from posttrain.training import requirements
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer
from posttrain.training.logs import TrainerLogCallback

RECORD = "preference"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """A Bradley-Terry reward model on preference pairs; `trainer:` feeds trl.RewardConfig.

    The model becomes a sequence classifier with one output, trained so the chosen response scores above the
    rejected one; ties are dropped (and counted).
    """

    trainer_class: ClassVar[str] = "trl:RewardConfig"

    type: Literal["reward_model"]
    finetuning: Literal["full", "lora", "freeze", "oft"] = "full"
    template: str | None = None


log = logging.getLogger("posttrain")

DEFAULTS = {**COMMON, "max_length": 1024}


@dataclasses.dataclass
class Plan:
    args: RewardConfig
    resume: str | None


def plan(stage, pipeline, output_dir) -> Plan:
    return Plan(*trainer_args(stage, pipeline, RewardConfig, output_dir, DEFAULTS))


def tokenized(tokenizer, pairs: list[dict], name: str):
    """chosen_ids/rejected_ids (and margin when every pair has one), which RewardTrainer takes as processed."""
    from datasets import Dataset

    with_margin = all(p["margin"] is not None for p in pairs)
    rows = []
    for pair in pairs:
        row = {"chosen_ids": encode(tokenizer, pair["prompt"], pair["chosen"]),
               "rejected_ids": encode(tokenizer, pair["prompt"], pair["rejected"])}
        if with_margin:
            row["margin"] = pair["margin"]
        rows.append(row)
    if not rows:
        raise PosttrainError(f"{name}: no preference pairs (after dropping ties)")
    return Dataset.from_list(rows)


def run(ctx: StageContext) -> dict:
    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(requirements.problems(stage, pipeline))
    p = plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    train_pairs, ties = load_pairs(stage.data, f"stage {stage.name} data")
    eval_pairs = load_pairs(stage.eval_data, f"stage {stage.name} eval_data")[0] if stage.eval_data else []
    if stage.val_size and not eval_pairs:
        train_pairs, eval_pairs = split_off(train_pairs, stage.val_size, pipeline.seed)
    train = tokenized(tokenizer, train_pairs, f"stage {stage.name} data")
    evaluation = tokenized(tokenizer, eval_pairs, f"stage {stage.name} eval") if eval_pairs else None
    _warn_long(train, p.args.max_length, f"stage {stage.name} data")

    # the new head is drawn from the global RNG before the Trainer seeds it: seed here, so a rerun is the same run
    set_seed(p.args.seed)
    model = load_classifier(ctx.model_path, pipeline)
    model.config.pad_token_id = tokenizer.pad_token_id  # the classifier finds each row's last token by it
    model = prepare(model, stage, keep=("score",))  # freeze tuning trains the new head too
    trainer = RewardTrainer(
        model=model,
        args=p.args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft_config(stage, task_type="SEQ_CLS"),
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )
    metrics = train_and_save(trainer, ctx, tokenizer, p.resume, evaluate=evaluation is not None)
    metrics.update(train_examples=len(train_pairs), eval_examples=len(eval_pairs), ties_dropped=ties)
    return metrics


def load_classifier(path: str, pipeline):
    """The input model (a causal LM, a LoRA stage's adapter merged in) as a sequence classifier with one output:
    a new score head, which is what a reward model starts from."""
    return load_model(path, dtype=training_dtype(pipeline.dtype), trust_remote_code=pipeline.trust_remote_code,
                      attn_implementation=pipeline.attn_implementation, task="sequence_classification", num_labels=1)


def _warn_long(dataset, max_length, name) -> None:
    if not max_length:
        return
    over = sum(1 for c, r in zip(dataset["chosen_ids"], dataset["rejected_ids"]) if max(len(c), len(r)) > max_length)
    if over == len(dataset):
        raise PosttrainError(f"{name}: all {over} pairs are longer than max_length={max_length}, and the trainer "
                             "skips such pairs; raise the stage's trainer.max_length (LLaMA-Factory's cutoff_len)")
    if over:
        log.warning("%s: %d of %d pairs are longer than max_length=%d and are skipped by the trainer",
                    name, over, len(dataset), max_length)
