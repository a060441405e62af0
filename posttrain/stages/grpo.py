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
from posttrain.gpu import require as require_machine
from posttrain.models.loading import load_model, load_tokenizer, lora_config, training_dtype
from posttrain.rewards.adapters import trl_reward
from posttrain.rollouts import generation_problems
from posttrain.stages import StageContext
from posttrain.training.defaults import COMMON, apply_common, build_config
from posttrain.training.finish import train_and_save
from posttrain.training.logs import TrainerLogCallback, reward_trend



def plan(stage, pipeline, output_dir, processes: int | None = None) -> tuple[GRPOConfig, object]:
    """The stage's GRPOConfig and checkpoint to resume from. `processes`: the data-parallel world the batch is
    checked against, when it is not this one (`posttrain verl prepare --gpus`); the config then carries that
    world's generation batch."""
    settings = {**COMMON, **stage.trainer}
    where = f"stages.{stage.name}.trainer"
    resume = apply_common(settings, stage, pipeline, GRPOConfig, where)
    settings.setdefault("reward_weights", [reward.weight for reward in stage.rewards])
    if processes is None and not os.environ.get("WORLD_SIZE") and pipeline.launch.processes > 1:
        processes = pipeline.launch.processes  # outside the launched workers (validate): the world they will have
    world = processes or int(os.environ.get("WORLD_SIZE", "1"))
    check_groups(settings, where, world)
    if processes and not settings.get("generation_batch_size"):
        # TRL sizes the generation round by this process's world; give it the other world's explicitly
        steps = settings.pop("steps_per_generation", None) or _value(settings, "gradient_accumulation_steps")
        settings["generation_batch_size"] = _value(settings, "per_device_train_batch_size") * processes * steps
    return build_config(GRPOConfig, where, output_dir=str(output_dir), **settings), resume


def _value(settings: dict, key: str):
    """A trainer setting as GRPOConfig will have it: the stage's value, else TRL's default."""
    if settings.get(key) is not None:
        return settings[key]
    return next(f.default for f in dataclasses.fields(GRPOConfig) if f.name == key)


def check_groups(settings: dict, where: str, processes: int) -> None:
    """Each generation round must hold whole groups of num_generations completions; say how to get there."""
    rules = generation_problems(settings, where, processes)
    if rules:
        raise PosttrainError("\n".join(rules))
    per_device, group = _value(settings, "per_device_train_batch_size"), _value(settings, "num_generations")
    steps = _value(settings, "steps_per_generation") or _value(settings, "gradient_accumulation_steps")
    explicit = _value(settings, "generation_batch_size")
    completions = explicit or per_device * processes * steps
    if not all(isinstance(v, int) and v > 0 for v in (per_device, group, steps, completions)):
        return  # a type error is the config class's to report
    if completions % group == 0:
        return
    divisors = ", ".join(str(n) for n in range(2, completions + 1) if completions % n == 0)
    if explicit:
        made, fix = f"generation_batch_size {completions}", f"generation_batch_size: {group * -(-completions // group)}"
    else:
        made = f"per_device_train_batch_size {per_device} x {processes} process(es) x steps_per_generation {steps}"
        fix = f"per_device_train_batch_size: {group * -(-per_device // group)}"
    raise PosttrainError(f"{where}: a generation round makes {completions} completions ({made}), not a whole "
                         f"number of groups of num_generations {group}: set {fix}"
                         + (f", or num_generations to one of {divisors}" if divisors else ""))


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
    require_machine(stage, pipeline)
    args, resume = plan(stage, pipeline, ctx.checkpoints_dir)
    from posttrain.rewards import search

    # rewards are scored in this process; every stage sets the backend afresh (what it leaves unset comes from
    # the environment), so a stage never inherits an earlier stage's index
    index = stage.search_index or (stage.search_corpus and corpus_index(stage.search_corpus, ctx.stage_dir))
    search.configure(index=index, backend=stage.search_backend, cache=stage.search_cache)
    rows = prompts(stage.data)
    if not rows:
        raise PosttrainError(f"stage {stage.name}: the training data holds no records")
    tokenizer = load_tokenizer(ctx.model_path, template=stage.template or pipeline.template,
                               trust_remote_code=pipeline.trust_remote_code)
    model = load_model(ctx.model_path, dtype=training_dtype(pipeline.dtype), trust_remote_code=pipeline.trust_remote_code,
                       attn_implementation=pipeline.attn_implementation, quantize_4bit=stage.finetuning == "qlora")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[_reward_func(reward, ctx) for reward in stage.rewards],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(stage.lora) if stage.finetuning in ("lora", "qlora") else None,
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )
    metrics = train_and_save(trainer, ctx, tokenizer, resume)
    metrics.update(train_examples=len(rows), **reward_trend(ctx.log_path))
    return metrics


def _reward_func(reward, ctx: StageContext):
    """A library reward by name, or a trained reward model (an earlier stage's output or a directory)."""
    if reward.model is None:
        return trl_reward(reward.name)
    from posttrain.pipeline import reward_model_path
    from posttrain.scoring.rewards import model_reward

    return model_reward(reward, reward_model_path(reward.model, ctx.pipeline),
                        template=ctx.stage.template or ctx.pipeline.template)
