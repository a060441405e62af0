"""Reinforcement with verifiable rewards, with TRL's GRPOTrainer.

The stage reads rl_prompt records (jsonl, or VERL parquet), scores
completions with reward functions from the library (the same functions the
evaluation uses and VERL calls), weights them as the `rewards:` list says,
and logs each reward's mean and std per step (TRL names them after the
function). Prompts stay messages; TRL applies the chat template once. The
stage's `trainer:` block is passed to `trl.GRPOConfig` as is.
"""

from __future__ import annotations

import json

from trl import GRPOConfig, GRPOTrainer

from posttrain.data.formats import load_records
from posttrain.data.sources import resolve_sources
from posttrain.errors import PosttrainError
from posttrain.models.loading import load_model, load_tokenizer, lora_config
from posttrain.rewards.adapters import trl_reward
from posttrain.stages import StageContext
from posttrain.training.defaults import COMMON, apply_common, build_config
from posttrain.training.finish import train_and_save
from posttrain.training.logs import TrainerLogCallback



def plan(stage, pipeline, output_dir) -> tuple[GRPOConfig, object]:
    settings = {**COMMON, **stage.trainer}
    where = f"stages.{stage.name}.trainer"
    resume = apply_common(settings, pipeline, GRPOConfig, where)
    settings.setdefault("reward_weights", [reward.weight for reward in stage.rewards])
    return build_config(GRPOConfig, where, output_dir=str(output_dir), **settings), resume


def prompts(specs) -> list[dict]:
    rows = []
    for source in resolve_sources(specs):
        records = load_records(source.path, source.format, split=source.split, max_samples=source.max_samples,
                               record="rl_prompt")
        for _, record in records:
            rows.append({"prompt": record["prompt"], "data_source": record["data_source"],
                         "ground_truth_json": json.dumps(record["ground_truth"]),
                         "extra_info_json": json.dumps(record["extra_info"])})
    return rows


def run(ctx: StageContext) -> dict:
    from datasets import Dataset

    stage, pipeline = ctx.stage, ctx.pipeline
    args, resume = plan(stage, pipeline, ctx.checkpoints_dir)
    if stage.search_index:
        from posttrain.rewards import search

        search.configure(index=stage.search_index)  # rewards are scored in this process
    rows = prompts(stage.data)
    if not rows:
        raise PosttrainError(f"stage {stage.name}: the training data holds no records")
    tokenizer = load_tokenizer(ctx.model_path, template=stage.template or pipeline.template,
                               trust_remote_code=pipeline.trust_remote_code)
    model = load_model(ctx.model_path, dtype=pipeline.dtype, trust_remote_code=pipeline.trust_remote_code,
                       attn_implementation=pipeline.attn_implementation, quantize_4bit=stage.finetuning == "qlora")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[trl_reward(reward.name) for reward in stage.rewards],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(stage.lora) if stage.finetuning in ("lora", "qlora") else None,
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )
    metrics = train_and_save(trainer, ctx, tokenizer, resume)
    metrics.update(train_examples=len(rows))
    return metrics
