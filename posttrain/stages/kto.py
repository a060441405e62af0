"""KTO on unpaired preference records (one answer each, desirable or not), with TRL's KTOTrainer.

KTO needs no pairs: each record is a prompt, one answer and a label, which is
what feedback logs hold and what LLaMA-Factory's `kto_tag` datasets are. The
policy raises the likelihood of desirable answers and lowers that of
undesirable ones, relative to a frozen reference: the stage's input model, an
earlier LoRA stage's adapter merged in (training/preference.py). The stage's
`trainer:` block is passed to `trl.KTOConfig` as is (`beta`,
`desirable_weight`, `undesirable_weight`, `loss_type`: kto or
apo_zero_unpaired); the desirable and undesirable counts are logged, since
KTO's paper bounds how far their weighted ratio may stray from 1.
"""

from __future__ import annotations

import itertools
import logging
from typing import ClassVar, Literal

from posttrain.config.schema import HeldOutDataStage
from posttrain.data.formats import load_records
from posttrain.data.sources import resolve_sources
from posttrain.stages import StageContext
from posttrain.training import requirements
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer, train_and_held_out
from posttrain.training.preference import Plan, build_trainer, check_loss_types

RECORD = "unpaired_preference"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """KTO on answers labelled desirable or undesirable; `trainer:` feeds trl.KTOConfig.

    The reference model is the stage's input model (an earlier LoRA stage's adapter merged in).
    """

    trainer_class: ClassVar[str] = "trl:KTOConfig"

    type: Literal["kto"]
    finetuning: Literal["full", "lora", "qlora", "freeze", "oft"] = "full"
    template: str | None = None


log = logging.getLogger("posttrain")

# KTOConfig's learning rate default (1e-6) suits 7 B models; posttrain keeps TRL's, and its own max_length
DEFAULTS = {**COMMON, "max_length": 1024}


def plan(stage, pipeline, output_dir) -> Plan:
    from trl import KTOConfig, KTOTrainer

    p = Plan(*trainer_args(stage, pipeline, KTOConfig, output_dir, DEFAULTS))
    check_loss_types(stage, p.args.loss_type, KTOTrainer)
    return p


def load_answers(specs) -> list[dict]:
    records = []
    for source in resolve_sources(specs):
        rows = load_records(source.path, source.format, columns=source.columns, tags=source.tags,
                            split=source.split, record=RECORD)
        records += [record for _, record in itertools.islice(rows, source.max_samples)]
    return records


def answers_dataset(records: list[dict]):
    """TRL's conversational unpaired preference rows."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"], "label": r["label"]}
                              for r in records])


def run(ctx: StageContext) -> dict:
    from trl import KTOTrainer

    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(requirements.problems(stage, pipeline))
    p = plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    train_records, eval_records = train_and_held_out(stage, pipeline, load_answers)
    desirable = sum(r["label"] for r in train_records)
    log.info("stage %s: %d desirable and %d undesirable answers", stage.name, desirable,
             len(train_records) - desirable)
    evaluation = answers_dataset(eval_records) if eval_records else None
    trainer = build_trainer(KTOTrainer, ctx, p.args, tokenizer, answers_dataset(train_records), evaluation)
    metrics = train_and_save(trainer, ctx, tokenizer, p.resume, evaluate=evaluation is not None)
    metrics.update(train_examples=len(train_records), eval_examples=len(eval_records),
                   desirable=desirable, undesirable=len(train_records) - desirable)
    return metrics
