"""Reinforcement with verifiable rewards, with TRL's GRPOTrainer.

The stage reads rl_prompt records (jsonl, or VERL parquet), scores
completions with reward functions from the library (the same functions the
evaluation uses and VERL calls), weights them as the `rewards:` list says,
and logs each reward's mean and std per step (TRL names them after the
function). Prompts stay messages; TRL applies the chat template once. The
stage's `trainer:` block is passed to `trl.GRPOConfig` as is.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from trl import GRPOConfig, GRPOTrainer

from posttrain.data.formats import load_records
from posttrain.data.sources import resolve_sources
from posttrain.errors import PosttrainError
from posttrain.models.loading import load_model, load_tokenizer, lora_config
from posttrain.rewards.adapters import trl_reward
from posttrain.stages import StageContext
from posttrain.training.defaults import COMMON, apply_common, build_config
from posttrain.training.finish import train_and_save
from posttrain.training.logs import TrainerLogCallback, reward_trend



def plan(stage, pipeline, output_dir) -> tuple[GRPOConfig, object]:
    settings = {**COMMON, **stage.trainer}
    where = f"stages.{stage.name}.trainer"
    resume = apply_common(settings, pipeline, GRPOConfig, where)
    settings.setdefault("reward_weights", [reward.weight for reward in stage.rewards])
    check_groups(settings, where)
    return build_config(GRPOConfig, where, output_dir=str(output_dir), **settings), resume


def check_groups(settings: dict, where: str) -> None:
    """Each generation round must hold whole groups of num_generations completions; say how to get there."""
    default = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    value = lambda key: settings.get(key) if settings.get(key) is not None else default[key]  # noqa: E731
    per_device, group = value("per_device_train_batch_size"), value("num_generations")
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    steps = value("steps_per_generation") or value("gradient_accumulation_steps")
    completions = value("generation_batch_size") or per_device * processes * steps
    made = (f"generation_batch_size {completions}" if value("generation_batch_size") else
            f"per_device_train_batch_size {per_device} x {processes} process(es) x steps_per_generation {steps}")
    if not isinstance(group, int) or group < 1 or not isinstance(completions, int) or completions % group == 0:
        return  # a type error is the config class's to report
    divisors = [n for n in range(2, completions + 1) if completions % n == 0]
    raise PosttrainError(
        f"{where}: a generation round makes {completions} completions ({made}), not a whole number of groups of "
        f"num_generations {group}: set per_device_train_batch_size: {group * -(-per_device // group)}"
        + (f", or num_generations to one of {', '.join(map(str, divisors))}" if divisors else ""))


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


def corpus_index(corpus: str, folder: Path, build: bool = True) -> str:
    """The FTS5 index of `corpus` in `folder`, built (unless `build` is false, or one of the same content is
    there already)."""
    from posttrain.pipeline import file_fingerprint
    from posttrain.rewards.search.index import build_index

    if not Path(corpus).is_file():
        raise PosttrainError(f"search_corpus: {corpus}: no such file")
    index = Path(folder) / f"search_index-{file_fingerprint(corpus)[:16]}.db"
    if build and not index.exists():
        build_index(corpus, index)
    return str(index)


def run(ctx: StageContext) -> dict:
    from datasets import Dataset

    stage, pipeline = ctx.stage, ctx.pipeline
    args, resume = plan(stage, pipeline, ctx.checkpoints_dir)
    index = stage.search_index or (stage.search_corpus and corpus_index(stage.search_corpus, ctx.stage_dir))
    if index or stage.search_backend:
        from posttrain.rewards import search

        # rewards are scored in this process
        search.configure(index=index, backend=stage.search_backend, cache=stage.search_cache)
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
    metrics.update(train_examples=len(rows), **reward_trend(ctx.log_path))
    return metrics
