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
import os
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from posttrain.config.schema import (
    DataSpec,
    FreezeSpec,
    LoraSpec,
    OftSpec,
    RewardSpec,
    TrainingStage,
    as_list,
    one_search_source,
)
from posttrain.data.formats import load_records
from posttrain.data.sources import resolve_sources
from posttrain.errors import PosttrainError
from posttrain.models.finetuning import peft_config, prepare
from posttrain.models.loading import load_model, load_tokenizer, training_dtype
from posttrain.rewards import search
from posttrain.rewards.adapters import trl_reward
from posttrain.rewards.search.index import corpus_index
from posttrain.runs.layout import reward_model_path
from posttrain.scoring.rewards import model_reward
from posttrain.stages import StageContext
from posttrain.stages.grpo import rollouts
from posttrain.stages.grpo.rollouts import generation_problems, setting_value
from posttrain.training import requirements
from posttrain.training.defaults import COMMON, apply_common, build_config
from posttrain.training.finish import train_and_save
from posttrain.training.logs import TrainerLogCallback, reward_trend

if TYPE_CHECKING:
    from trl import GRPOConfig

RECORD = "rl_prompt"  # what `data:` reads; the data doctor checks it


class Config(TrainingStage):
    """Reinforcement with verifiable rewards on rl_prompt records; `trainer:` feeds trl.GRPOConfig."""

    trainer_class: ClassVar[str] = "trl:GRPOConfig"

    type: Literal["grpo"]
    data: list[DataSpec] = Field(min_length=1)
    rewards: list[RewardSpec] = Field(min_length=1)
    finetuning: Literal["full", "lora", "qlora", "freeze", "oft"] = "full"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    freeze: FreezeSpec = Field(default_factory=FreezeSpec)
    oft: OftSpec = Field(default_factory=OftSpec)
    template: str | None = None
    search_index: str | None = None  # the FTS5 study-search index the rewards query
    search_corpus: str | None = None  # or a PubMed-style corpus the stage indexes itself (once per content)
    search_backend: Literal["index", "ncbi"] | None = None  # ncbi: live PubMed (NCBI_API_KEY from the environment)
    search_cache: str | None = None  # where live PubMed answers are kept between rollouts and runs
    plot_loss: bool = False

    _data_lists = field_validator("data", mode="before")(as_list)

    @model_validator(mode="after")
    def _one_search_source(self):
        return one_search_source(self)


def plan(stage, pipeline, output_dir, processes: int | None = None) -> tuple[GRPOConfig, object]:
    """The stage's GRPOConfig and checkpoint to resume from. `processes`: the data-parallel world the batch is
    checked against, when it is not this one (`posttrain verl prepare --gpus`); the config then carries that
    world's generation batch."""
    from trl import GRPOConfig

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
        steps = settings.pop("steps_per_generation", None) or setting_value(settings, "gradient_accumulation_steps")
        settings["generation_batch_size"] = setting_value(settings, "per_device_train_batch_size") * processes * steps
    return build_config(GRPOConfig, where, output_dir=str(output_dir), **settings), resume


def check_groups(settings: dict, where: str, processes: int) -> None:
    """Each generation round must hold whole groups of num_generations completions; say how to get there."""
    rules = generation_problems(settings, where, processes)
    if rules:
        raise PosttrainError("\n".join(rules))
    per_device = setting_value(settings, "per_device_train_batch_size")
    group = setting_value(settings, "num_generations")
    steps = setting_value(settings, "steps_per_generation") or setting_value(settings, "gradient_accumulation_steps")
    explicit = setting_value(settings, "generation_batch_size")
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


def problems(stage, pipeline, launched: bool = False) -> list[str]:
    """A training stage's machine problems, and those of its vLLM rollouts."""
    return (requirements.problems(stage, pipeline, launched)
            + [p for p in rollouts.vllm_problems(stage, pipeline, f"stages.{stage.name}.trainer") if p])


def notes(stage, pipeline) -> list[str]:
    return requirements.notes(stage, pipeline) + rollouts.vllm_notes(stage, pipeline, f"stages.{stage.name}.trainer")


def run(ctx: StageContext) -> dict:
    from datasets import Dataset
    from trl import GRPOTrainer

    stage, pipeline = ctx.stage, ctx.pipeline
    requirements.require(problems(stage, pipeline))
    args, resume = plan(stage, pipeline, ctx.checkpoints_dir)
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
    model = prepare(model, stage)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[_reward_func(reward, ctx) for reward in stage.rewards],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config(stage),
        callbacks=[TrainerLogCallback(ctx.log_path)],
    )
    metrics = train_and_save(trainer, ctx, tokenizer, resume)
    metrics.update(train_examples=len(rows), **reward_trend(ctx.log_path))
    return metrics


def _reward_func(reward, ctx: StageContext):
    """A library reward by name, or a trained reward model (an earlier stage's output or a directory)."""
    if reward.model is None:
        return trl_reward(reward.name)
    return model_reward(reward, reward_model_path(reward.model, ctx.pipeline),
                        template=ctx.stage.template or ctx.pipeline.template)
