"""Continued pretraining on raw text (LLaMA-Factory's `stage: pt`), with transformers' Trainer.

The stage reads text records ({"text": ...} rows, or .txt files a row a line), tokenizes each
document with an end-of-text token after it, concatenates them and cuts the stream into blocks
of `block_size` tokens (LLaMA-Factory's cutoff_len packing): every token is trained on, no
padding. Loss is next-token prediction over the whole block. With held-out text (`eval_data` or
`val_size`) the stage reports the input model's loss and perplexity on it beside its own. The
stage's `trainer:` block is passed to `transformers.TrainingArguments` as is.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from posttrain.config.schema import HeldOutDataStage
from posttrain.data.formats import load_records
from posttrain.data.sources import resolve_sources
from posttrain.errors import PosttrainError
from posttrain.models.finetuning import peft_config, prepare
from posttrain.models.loading import load_model, training_dtype
from posttrain.stages import StageContext
from posttrain.training import requirements
from posttrain.training.defaults import trainer_args
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer, train_and_held_out
from posttrain.training.logs import TrainerLogCallback

if TYPE_CHECKING:
    from transformers import TrainingArguments

RECORD = "text"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """Continued pretraining on raw text; `trainer:` feeds transformers.TrainingArguments."""

    trainer_class: ClassVar[str] = "transformers:TrainingArguments"

    type: Literal["pt"]
    block_size: int = Field(default=1024, ge=8)  # tokens per packed training row (LLaMA-Factory's cutoff_len)
    finetuning: Literal["full", "lora", "freeze", "oft"] = "full"


@dataclasses.dataclass
class Plan:
    args: TrainingArguments
    resume: str | None


def plan(stage, pipeline, output_dir) -> Plan:
    """The TrainingArguments a run would use; `validate` builds them too."""
    from transformers import TrainingArguments

    return Plan(*trainer_args(stage, pipeline, TrainingArguments, output_dir))


def texts(specs) -> list[str]:
    return [record["text"] for source in resolve_sources(specs)
            for _, record in load_records(source.path, source.format, split=source.split,
                                          max_samples=source.max_samples, record="text", columns=source.columns)]


def blocks(tokenizer, documents: list[str], block_size: int, name: str):
    """A datasets.Dataset of `block_size`-token rows: the documents, each ended by EOS, one stream cut in blocks.

    The tail shorter than a block is dropped, as LLaMA-Factory and transformers' run_clm do; a corpus shorter
    than one block is an error rather than an empty run."""
    from datasets import Dataset

    end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = tokenizer(documents, add_special_tokens=False)["input_ids"]
    stream = list(itertools.chain.from_iterable(ids + end for ids in encoded))
    count = len(stream) // block_size
    if not count:
        raise PosttrainError(f"{name}: {len(stream)} tokens in all, fewer than one block of block_size "
                             f"{block_size}; lower block_size or add text")
    rows = [stream[i * block_size:(i + 1) * block_size] for i in range(count)]
    return Dataset.from_dict({"input_ids": rows, "labels": rows, "attention_mask": [[1] * block_size] * count})


def run(ctx: StageContext) -> dict:
    from transformers import Trainer, default_data_collator

    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(requirements.problems(stage, pipeline))
    p = plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    train_texts, eval_texts = train_and_held_out(stage, pipeline, texts)
    train = blocks(tokenizer, train_texts, stage.block_size, f"stage {stage.name} train")
    evaluation = blocks(tokenizer, eval_texts, stage.block_size, f"stage {stage.name} eval") if eval_texts else None
    model = load_model(ctx.model_path, dtype=training_dtype(pipeline.dtype), trust_remote_code=pipeline.trust_remote_code,
                       attn_implementation=pipeline.attn_implementation)
    model = prepare(model, stage)
    if peft_config(stage) is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config(stage))
    trainer = Trainer(model=model, args=p.args, train_dataset=train, eval_dataset=evaluation,
                      processing_class=tokenizer, data_collator=default_data_collator,
                      callbacks=[TrainerLogCallback(ctx.log_path)])
    # the input model on the held-out text, before a step is taken: what the stage has to beat
    before = trainer.evaluate(metric_key_prefix="base_eval")["base_eval_loss"] if evaluation is not None else None
    metrics = train_and_save(trainer, ctx, tokenizer, p.resume, evaluate=evaluation is not None)
    if before is not None:
        metrics.update(base_eval_loss=before, base_perplexity=math.exp(before),
                       perplexity=math.exp(metrics["eval_loss"]))
    metrics.update(train_documents=len(train_texts), eval_documents=len(eval_texts), train_blocks=len(train),
                   block_size=stage.block_size)
    return metrics
