"""Supervised fine-tuning on conversations, with TRL's SFTTrainer.

posttrain adds what SFTTrainer lacks for this job: records from any
supported format, the chat template applied once with loss on assistant turns
only, exact packing (attention never crosses examples, on CPU too), resume
from the last whole checkpoint, and LLaMA-Factory's trainer_log.jsonl. The
stage's `trainer:` block is passed to `trl.SFTConfig` as is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import ClassVar, Literal

import torch
from trl import SFTConfig, SFTTrainer

from posttrain import machine as gpu
from posttrain.config.schema import HeldOutDataStage
from posttrain.data.chat import tokenize_conversation
from posttrain.data.sources import load_conversations_from
from posttrain.errors import PosttrainError
from posttrain.models.finetuning import peft_config, prepare
from posttrain.models.loading import load_model, training_dtype
from posttrain.stages import StageContext
from posttrain.training import cpu_bf16, full_logits, requirements
from posttrain.training.defaults import COMMON, apply_common, build_config
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer, train_and_held_out
from posttrain.training.logs import TrainerLogCallback
from posttrain.training.packing import ExactPackingCollator

RECORD = "conversation"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """Supervised fine-tuning on conversations; `trainer:` feeds trl.SFTConfig.

    SFTConfig's own `max_length`, `packing` and `assistant_only_loss` keep their
    names in `trainer:`; posttrain's defaults are 1024, true and true, and its
    packing is exact (attention never crosses examples).
    """

    trainer_class: ClassVar[str] = "trl:SFTConfig"

    type: Literal["sft"]
    finetuning: Literal["full", "lora", "qlora", "freeze", "oft"] = "full"
    template: str | None = None


log = logging.getLogger("posttrain")

# Where posttrain's defaults differ from SFTConfig's, and why (more in training/defaults.py).
DEFAULTS = {
    **COMMON,
    "max_length": 1024,
    "packing": True,  # exact, see training/packing.py
    "assistant_only_loss": True,
}


@dataclasses.dataclass
class Plan:
    """What the config decides before any data or model is read; `validate` builds it too."""

    args: SFTConfig
    max_length: int | None
    packing: bool
    assistant_only: bool
    resume: str | None


def plan(stage, pipeline, output_dir) -> Plan:
    settings = {**DEFAULTS, **stage.trainer}
    max_length = settings.pop("max_length")
    packing = bool(settings.pop("packing"))
    assistant_only = bool(settings.pop("assistant_only_loss"))
    where = f"stages.{stage.name}.trainer"
    if packing and not max_length:
        raise PosttrainError(f"{where}.max_length: packing needs a row length; set it or `packing: false`")
    if cpu_bf16.autocast_by_default(pipeline):
        settings.setdefault("bf16", True)  # over the fp32 weights
    resume = apply_common(settings, stage, pipeline, SFTConfig, where)
    if stage.eval_data or stage.val_size:
        settings.setdefault("eval_strategy", "steps" if "eval_steps" in settings else "epoch")
    args = build_config(
        SFTConfig, where,
        output_dir=str(output_dir),
        max_length=max_length,
        packing=False,  # packed by posttrain, exactly
        assistant_only_loss=False,  # labels are built by posttrain
        dataset_kwargs={"skip_prepare_dataset": True},
        **settings,
    )
    return Plan(args, max_length, packing, assistant_only, resume)


def notes(stage, pipeline) -> list[str]:
    """What `validate` tells of a training stage, and on a CPU with bf16 arithmetic that SFT trains in bf16 there."""
    fast = not gpu.cuda() and gpu.cpu_bf16_native()
    found = requirements.notes(stage, pipeline, cpu_bf16_is_fast=fast)
    bf16 = stage.trainer.get("bf16", pipeline.dtype == "bf16" or cpu_bf16.autocast_by_default(pipeline))
    if not (fast and bf16):
        return found
    weights = "bf16" if pipeline.dtype == "bf16" else "fp32"
    return found + [
        f"stages.{stage.name}: this CPU has bf16 arithmetic, so SFT trains under bf16 autocast over {weights} "
        "weights, with the attention in fp32 (`trainer: {bf16: false}` or `dtype: fp32` trains in fp32)"]


def run(ctx: StageContext) -> dict:
    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(requirements.problems(stage, pipeline))
    p = plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    train_records, eval_records = train_and_held_out(stage, pipeline, load_conversations_from)

    num_proc = p.args.dataset_num_proc
    train = tokenized(tokenizer, train_records, p.max_length, p.assistant_only, p.packing, f"{stage.name} train",
                      num_proc)
    evaluation = (tokenized(tokenizer, eval_records, p.max_length, p.assistant_only, p.packing,
                            f"{stage.name} eval", num_proc) if eval_records else None)

    model = load_model(ctx.model_path, dtype=training_dtype(pipeline.dtype), trust_remote_code=pipeline.trust_remote_code,
                       attn_implementation=pipeline.attn_implementation,
                       quantize_4bit=stage.finetuning == "qlora")
    attention = model.config._attn_implementation or "sdpa"
    if p.args.bf16 and attention == "sdpa" and not gpu.cuda():
        cpu_bf16.attention_in_fp32(model)
    model = prepare(model, stage)
    trainer = ExactSFTTrainer(
        model=model,
        args=p.args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        data_collator=ExactPackingCollator(
            pad_token_id=tokenizer.pad_token_id,
            varlen="flash" in attention,  # flash-attention isolates packed examples by position_ids
            mask_dtype=torch.bool if attention != "eager" else model.dtype,
        ),
        peft_config=peft_config(stage),
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )
    metrics = train_and_save(trainer, ctx, tokenizer, p.resume, evaluate=evaluation is not None)
    metrics.update(train_examples=len(train_records), eval_examples=len(eval_records))
    return metrics


def tokenized(tokenizer, records, max_length, assistant_only, packing, name, num_proc=None):
    """A datasets.Dataset of input_ids/labels, cut to max_length and packed when asked."""
    from datasets import Dataset
    from trl import pack_dataset

    def encode(row):
        record = json.loads(row["record"])
        out = tokenize_conversation(tokenizer, record["messages"], tools=record.get("tools"),
                                    assistant_only=assistant_only)
        return {"input_ids": out["input_ids"][:max_length], "labels": out["labels"][:max_length]}

    # Each record as its JSON text: Arrow would merge the tool calls' argument objects into one struct, giving every
    # call the other calls' argument names as nulls, and the model would train on arguments nobody passed.
    rows = Dataset.from_dict({"record": [json.dumps(record, ensure_ascii=False) for record in records]})
    dataset = rows.map(encode, remove_columns=["record"], desc=f"Tokenizing {name}", num_proc=num_proc)
    before = len(dataset)
    dataset = dataset.filter(lambda r: any(label != -100 for label in r["labels"][1:]), num_proc=num_proc)
    if len(dataset) < before:
        log.warning("%s: %d of %d records have no assistant tokens within max_length and are skipped",
                    name, before - len(dataset), before)
    if not len(dataset):
        raise PosttrainError(f"{name}: no record has an assistant turn within max_length={max_length}")
    if packing:
        dataset = pack_dataset(dataset, max_length, "bfd", {"desc": f"Packing {name}"})
    return dataset


class ExactSFTTrainer(SFTTrainer):
    """SFTTrainer that counts real tokens itself (with a 4-D mask TRL's count, the mask's sum, is wrong), and that
    scores a batch from the model's own logits where they are small (training/full_logits.py)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        real_tokens = inputs.pop("num_real_tokens", None)
        before = self._total_train_tokens
        if real_tokens is None and "position_ids" in inputs and "attention_mask" not in inputs:
            real_tokens = torch.tensor(inputs["position_ids"].size(1))  # padding-free rows: TRL's own count
        if self._full_logits_apply(inputs, return_outputs):
            out = self._full_logits_loss(model, inputs, num_items_in_batch)
        else:
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if real_tokens is not None and model.training:
            self._total_train_tokens = before + int(self.accelerator.gather_for_metrics(real_tokens).sum())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return out

    def _full_logits_apply(self, inputs, return_outputs) -> bool:
        """TRL's plain nll loss, nothing that needs its own forward (a loss function, label smoothing, a MoE aux
        loss, sequence or context parallelism, the logits handed back), and logits below the size rule."""
        plain = (not return_outputs and self.args.loss_type == "nll" and self.compute_loss_func is None
                 and self.label_smoother is None and not self.aux_loss_enabled
                 and getattr(self.accelerator, "parallelism_config", None) is None)
        return (plain and "labels" in inputs and "input_ids" in inputs and "shift_labels" not in inputs
                and full_logits.fits(inputs["input_ids"], self.model.config.get_text_config().vocab_size))

    def _full_logits_loss(self, model, inputs, num_items_in_batch):
        mode = "train" if self.model.training else "eval"
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        loss, entropy, hits, scored = full_logits.next_token_loss(outputs.logits, inputs["labels"], num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as TRL: DDP averages gradients
        gather = self.accelerator.gather_for_metrics
        scored = gather(scored).sum()
        for name, value in (("entropy", entropy), ("mean_token_accuracy", hits)):
            self._metrics[mode][name].append((gather(value).sum() / scored).item() if scored > 0 else 0.0)
        if mode == "eval":
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
