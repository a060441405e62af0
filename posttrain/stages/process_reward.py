"""Step-level process reward model (PRM): our own trainer code, since TRL 1.16 ships none.

A solution is the prompt (chat template applied, generation prompt added)
followed by its steps, each followed by `step_separator`. A token
classification head (two classes: 0 wrong, 1 correct) on the input causal LM
predicts each step's label at the last token of the separator after it;
every other position is labelled -100, so transformers' default cross-entropy
learns only there. The same `encode_steps` builds the scorer's inputs
(posttrain/scoring/process.py), so a step is scored exactly where it was
trained. The saved model's config.json (or `process_reward.json` beside a
LoRA adapter) records the separator under `posttrain_process_reward`.

Metrics at each evaluation, over the held-out solutions:

- `eval_step_accuracy`: the share of steps whose P(correct) >= 0.5 agrees with the label.
- `eval_first_error_f1`: ProcessBench's F1 of the first wrong step. The predicted first wrong step
  of a solution is the first step with P(correct) < 0.5, or "none" when there is none; the true one is
  the first step labelled false, or "none". `eval_first_error_acc_wrong` is the share of solutions
  with a wrong step whose predicted first wrong step is exactly the true one; `eval_first_error_acc_correct`
  the share of all-correct solutions predicted "none"; the F1 is their harmonic mean (one of them alone
  when the evaluation data has no solution of the other kind, 0 when both are 0).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field
from transformers import TrainingArguments

from posttrain.config.schema import HeldOutDataStage
from posttrain.data.formats import load_records
from posttrain.data.sources import resolve_sources
from posttrain.errors import PosttrainError
from posttrain.models.loading import lora_config, training_dtype
from posttrain.scoring.process import (  # noqa: F401 (the format)
    LABELS,
    MARKER,
    MARKER_FILE,
    encode_steps,
    first_error,
    load_token_classifier,
    step_metrics,
)
from posttrain.stages import StageContext
from posttrain.training import requirements
from posttrain.training.defaults import COMMON, trainer_args
from posttrain.training.finish import train_and_save
from posttrain.training.inputs import stage_tokenizer, train_and_held_out
from posttrain.training.logs import TrainerLogCallback

RECORD = "steps"  # what `data:` reads; the data doctor checks it


class Config(HeldOutDataStage):
    """A step-level process reward model on `steps` records; `trainer:` feeds transformers.TrainingArguments.

    Each step is followed by `step_separator` and its label is predicted at that separator's token.
    """

    trainer_class: ClassVar[str] = "transformers:TrainingArguments"

    type: Literal["process_reward"]
    step_separator: str = Field(default="\n", min_length=1)
    max_length: int = Field(default=1024, ge=8)
    finetuning: Literal["full", "lora"] = "full"
    template: str | None = None


log = logging.getLogger("posttrain")


@dataclasses.dataclass
class Plan:
    args: TrainingArguments
    resume: str | None


def plan(stage, pipeline, output_dir) -> Plan:
    """The TrainingArguments a run would use; `validate` builds them too."""
    # the token classification collator pads labels; nothing else should drop our columns
    return Plan(*trainer_args(stage, pipeline, TrainingArguments, output_dir,
                              {**COMMON, "remove_unused_columns": False}))


def load_steps(specs) -> list[dict]:
    records = []
    for source in resolve_sources(specs):
        rows = load_records(source.path, source.format, columns=source.columns, tags=source.tags,
                            split=source.split, max_samples=source.max_samples, record="steps")
        records += [record for _, record in rows]
    return records


def tokenized(tokenizer, records, separator, max_length, name):
    from datasets import Dataset

    rows, cut = [], 0
    for record in records:
        out = encode_steps(tokenizer, record["prompt"], record["completions"], separator, record["labels"],
                           max_length)
        cut += len(record["completions"]) - len(out["positions"])
        if out["positions"]:
            rows.append({"input_ids": out["input_ids"], "attention_mask": [1] * len(out["input_ids"]),
                         "labels": out["labels"]})
    if cut:
        log.warning("%s: %d steps end past max_length=%d and are not learned", name, cut, max_length)
    if not rows:
        raise PosttrainError(f"{name}: no record has a whole step within max_length={max_length}")
    return Dataset.from_list(rows)


def _probabilities(logits, labels):
    # only P(correct) is kept between eval batches: [batch, length] instead of [batch, length, 2]
    import torch

    return torch.softmax(logits.float(), dim=-1)[..., 1]


def compute_metrics(prediction) -> dict:
    probs, label_ids = prediction.predictions, prediction.label_ids
    per_probs, per_labels = [], []
    for row_probs, row_labels in zip(np.asarray(probs), np.asarray(label_ids)):
        at = row_labels != -100
        per_probs.append(row_probs[at].tolist())
        per_labels.append([bool(x) for x in row_labels[at]])
    return step_metrics(per_probs, per_labels)


class _SaveWithMarker:
    """Saves the tokenizer and records how the model was trained, inside train_and_save's atomic write."""

    def __init__(self, tokenizer, marker: dict):
        self.tokenizer, self.marker = tokenizer, marker

    def save_pretrained(self, directory):
        self.tokenizer.save_pretrained(directory)
        config = Path(directory) / "config.json"
        if config.exists():
            data = json.loads(config.read_text(encoding="utf-8"))
            data[MARKER] = self.marker
            config.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        else:  # a LoRA adapter
            (Path(directory) / MARKER_FILE).write_text(json.dumps({MARKER: self.marker}, indent=2) + "\n",
                                                       encoding="utf-8")


def run(ctx: StageContext) -> dict:
    from transformers import DataCollatorForTokenClassification, Trainer, set_seed

    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(requirements.problems(stage, pipeline))
    p = plan(stage, pipeline, ctx.checkpoints_dir)
    tokenizer = stage_tokenizer(ctx)
    train_records, eval_records = train_and_held_out(stage, pipeline, load_steps)
    separator = stage.step_separator
    train = tokenized(tokenizer, train_records, separator, stage.max_length, f"{stage.name} train")
    evaluation = (tokenized(tokenizer, eval_records, separator, stage.max_length, f"{stage.name} eval")
                  if eval_records else None)

    # the new head is drawn from the global RNG before the Trainer seeds it: seed here, so a rerun is the same run
    set_seed(p.args.seed)
    model = load_token_classifier(ctx.model_path, training_dtype(pipeline.dtype), pipeline.trust_remote_code,
                                  pipeline.attn_implementation)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if stage.finetuning == "lora":
        from peft import get_peft_model

        config = lora_config(stage.lora, task_type="TOKEN_CLS")
        # the new head is trained whole (peft's modules_to_save for TOKEN_CLS); "all-linear" would wrap it too
        config.exclude_modules = ["score", "classifier"]
        model = get_peft_model(model, config)
    trainer = Trainer(
        model=model,
        args=p.args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics if evaluation is not None else None,
        preprocess_logits_for_metrics=_probabilities if evaluation is not None else None,
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )
    marker = {"step_separator": separator, "max_length": stage.max_length, "labels": LABELS}
    metrics = train_and_save(trainer, ctx, _SaveWithMarker(tokenizer, marker), p.resume,
                             evaluate=evaluation is not None)
    metrics.update(train_examples=len(train_records), eval_examples=len(eval_records),
                   train_steps_labelled=sum(len(r["completions"]) for r in train_records))
    return metrics
