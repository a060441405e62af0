"""The VERL bridge: hand a GRPO stage to VERL (volcengine/verl) on a Ray cluster.

A posttrain GRPO stage trains on one machine with TRL. Past one machine the
same stage moves to VERL's `python3 -m verl.trainer.main_ppo`, which needs
its own parquet data, its own Hydra overrides and a reward file it can load
by path. `prepare` writes all three from the pipeline file, so the VERL run
trains the same prompts with the same rewards and, as far as VERL has
counterparts, the same settings as `posttrain run` would:

- `train/val/test.parquet` in VERL's schema (the seeds' RL data): the stage's
  rl_prompt records, split reproducibly with the pipeline's seed (the same
  partition `posttrain data split` makes), `data_source` = `{task}_{split}`,
  prompts kept as messages (VERL applies the chat template once);
- `run_verl.sh`: one Hydra override per line, mapped from the `GRPOConfig`
  that `posttrain.stages.grpo.plan` builds (so TRL's and posttrain's defaults
  carry over); extra overrides given to the script come last and win;
- the reward is posttrain's own `rewards/adapters.py:compute_score`; a stage
  with several weighted rewards lists them in each row's `extra_info`.

Override keys were checked against VERL 0.9.1 (the PyPI release, its
`verl/trainer/config/_generated_ppo_trainer.yaml`); keys newer than older
releases are written `++key=...`, which those releases accept and ignore.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from posttrain.config import PipelineConfig, load_config
from posttrain.errors import ConfigError, PosttrainError
from posttrain.rewards.search.index import corpus_index

VERL_VERSION = "0.9.1"
SPLITS = ("train", "val", "test")
OUTPUTS = tuple(f"{split}.parquet" for split in SPLITS) + ("run_verl.sh",)
DEFAULT_PROMPT_LENGTH = 2048  # the seed's max prompt length, when the prompts cannot be measured

# GRPOConfig fields with a VERL counterpart below, and ones that do not change what is trained
MAPPED = {
    "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations", "generation_batch_size",
    "steps_per_generation", "num_iterations", "max_completion_length", "learning_rate", "weight_decay",
    "max_grad_norm", "adam_beta1", "adam_beta2", "lr_scheduler_type", "warmup_steps", "beta", "epsilon",
    "epsilon_high", "loss_type", "scale_rewards", "temperature", "top_p", "top_k", "num_train_epochs", "max_steps",
    "save_steps", "save_strategy", "save_total_limit", "eval_steps", "eval_strategy", "report_to", "run_name",
    "seed", "shuffle_dataset", "entropy_coef", "reward_weights", "gradient_checkpointing",
    "activation_checkpointing", "multi_objective_aggregation", "optim",
}
HARMLESS = re.compile(r"^(logging_.*|log_.*|num_completions_to_print|dataloader_.*|use_vllm|vllm_.*|bf16|fp16|tf32|"
                      r"use_cpu|push_to_hub|hub_.*|ddp_.*|per_device_eval_batch_size|eval_.*|disable_tqdm|"
                      r"resume_from_checkpoint|torch_compile.*|ds3_gather_for_generation|model_init_kwargs|"
                      r"trust_remote_code|cast_lm_head_to_fp32|disable_dropout|save_only_model|save_safetensors|"
                      r"gradient_checkpointing_kwargs)$")
LOSS_AGG = {"dapo": "token-mean", "bnpo": "token-mean", "grpo": "seq-mean-token-mean",
            "dr_grpo": "seq-mean-token-sum-norm"}
LOGGERS = {"wandb", "tensorboard", "mlflow", "swanlab", "clearml", "trackio"}
# VERL releases whose config has reward/reward.yaml read reward.custom_reward_function (0.9.1 ignores the
# top-level key); older ones know only the top-level custom_reward_function
_NEW_REWARD_LAYOUT = ('import importlib.util, os, sys; s = importlib.util.find_spec("verl"); '
                      'sys.exit(0 if s and os.path.isfile(os.path.join(os.path.dirname(s.origin), "trainer", '
                      '"config", "reward", "reward.yaml")) else 1)')


@dataclasses.dataclass
class Prepared:
    out_dir: Path
    counts: dict[str, int]
    script: Path
    overrides: list[str]
    notes: list[str]
    warnings: list[str]

    @property
    def command(self) -> str:
        return f"bash {shlex.quote(str(self.script))}"


def prepare(source, stage_name: str, out_dir, *, overrides=(), val_size: float = 0.1, test_size: float = 0.1,
            gpus: int = 1, nodes: int = 1, max_prompt_length: int | None = None, force: bool = False) -> Prepared:
    """Write OUT_DIR/{train,val,test}.parquet and OUT_DIR/run_verl.sh for a GRPO stage; see the module docstring."""
    from posttrain.stages import grpo

    config = source if isinstance(source, PipelineConfig) else load_config(source, overrides)
    stage = _grpo_stage(config, stage_name)
    _check_sizes(val_size, test_size, gpus, nodes, max_prompt_length)
    out_dir = Path(out_dir).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise PosttrainError(f"--out {out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise PosttrainError(f"--out {out_dir}: not empty; pass --force to replace its "
                             f"{', '.join(OUTPUTS)} (other files are kept)")
    notes: list[str] = []
    model_path, tokenizer_dir = _input_model(stage, config, notes)
    _template_note(stage, config, model_path, notes)
    args, _ = grpo.plan(stage, config, out_dir / "checkpoints", processes=gpus * nodes)
    records = [{"prompt": row["prompt"], "data_source": row["data_source"],
                "ground_truth": json.loads(row["ground_truth_json"]), "extra_info": json.loads(row["extra_info_json"])}
               for row in grpo.prompts(stage.data)]
    if not records:
        raise PosttrainError(f"stage {stage.name}: the training data holds no records")
    splits = _split(records, val_size, test_size, config.seed)
    rewards = _reward_list(stage, args.reward_weights, records)
    if max_prompt_length is None:
        max_prompt_length = _longest_prompt(records, tokenizer_dir, stage.template or config.template,
                                            config.trust_remote_code, notes)
    mapped, warnings = _overrides(stage, config, args, out_dir, model_path, len(splits["train"]), gpus, nodes,
                                  max_prompt_length, notes)
    counts = _write(out_dir, splits, rewards, _script(stage, config, mapped, out_dir))
    if stage.search_corpus:
        notes.append(f"search index of {stage.search_corpus}: {corpus_index(stage.search_corpus, out_dir)}")
    return Prepared(out_dir, counts, out_dir / "run_verl.sh", mapped, notes, warnings)


def _grpo_stage(config: PipelineConfig, name: str):
    grpo_names = [s.name for s in config.stages if s.type == "grpo"]
    listed = f"GRPO stages: {', '.join(grpo_names)}" if grpo_names else "the pipeline has no GRPO stage"
    stage = next((s for s in config.stages if s.name == name), None)
    if stage is None:
        from posttrain.errors import closest

        raise ConfigError(f"--stage: no stage named {name!r}; {listed}{closest(name, grpo_names)}")
    if stage.type != "grpo":
        raise ConfigError(f"--stage: stage {name} has type {stage.type}; VERL takes a GRPO stage ({listed})")
    return stage


def _check_sizes(val_size, test_size, gpus, nodes, max_prompt_length) -> None:
    if not 0 < val_size < 1:
        raise PosttrainError(f"--val-size: expected a fraction above 0 and below 1 (VERL needs validation prompts), "
                             f"got {val_size:g}")
    if not 0 <= test_size < 1 or val_size + test_size >= 1:
        raise PosttrainError(f"--test-size: expected a fraction from 0 that leaves training prompts beside "
                             f"--val-size {val_size:g}, got {test_size:g}")
    if gpus < 1 or nodes < 1:
        raise PosttrainError(f"--gpus and --nodes: expected at least 1, got {gpus} and {nodes}")
    if max_prompt_length is not None and max_prompt_length < 1:
        raise PosttrainError(f"--max-prompt-length: expected a positive number of tokens, got {max_prompt_length}")


def _input_model(stage, config: PipelineConfig, notes: list[str]) -> tuple[str, Path | None]:
    """The stage's input model as the pipeline resolves it (absolute when local), and a local dir with its tokenizer."""
    names = [s.name for s in config.stages]
    ref = stage.model or "base"
    if ref not in names:
        return _local(config.model if ref == "base" else ref, notes)
    if names.index(ref) >= names.index(stage.name):
        raise ConfigError(f"stages.{stage.name}.model: {ref!r} is a later stage; a stage can start from an earlier one")
    path = (Path(config.output_dir) / ref / "model").resolve()
    if not path.is_dir():
        notes.append(f"the input model is stage {ref}'s output {path}, which does not exist yet: "
                     f"train it first (posttrain run FILE --only {ref}), then run the script")
    if (path / "adapter_config.json").exists() or getattr(config.stage(ref), "finetuning", "full") != "full":
        notes.append(f"stage {ref} trains a LoRA adapter, and VERL loads actor_rollout_ref.model.path as a full "
                     f"model: merge the adapter into its base and pass actor_rollout_ref.model.path=MERGED_DIR")
    return str(path), path if path.is_dir() else _upstream_tokenizer(config, config.stage(ref))


def _template_note(stage, config: PipelineConfig, model_path: str, notes: list[str]) -> None:
    """posttrain applies a named `template:`; VERL applies the chat template saved with the model."""
    template = stage.template or config.template
    earlier = next((s for s in config.stages if s.name == stage.model), None)
    saved = (getattr(earlier, "template", None) or config.template) if earlier is not None else None  # saved with it
    if template and template != saved:
        notes.append(f"the stage applies chat template {template!r}, VERL the one saved with {model_path}: save the "
                     f"tokenizer with that template there, or set actor_rollout_ref.model.custom_chat_template")


def _upstream_tokenizer(config: PipelineConfig, stage) -> Path | None:
    """For an untrained stage: the nearest local model upstream, whose tokenizer that stage will save."""
    names, seen = [s.name for s in config.stages], set()
    while True:
        ref = stage.model or "base"
        if ref not in names:
            return _local(config.model if ref == "base" else ref, [])[1]
        if (Path(config.output_dir) / ref / "model").is_dir():
            return (Path(config.output_dir) / ref / "model").resolve()
        if ref in seen:
            return None
        seen.add(ref)
        stage = config.stage(ref)


def _local(path: str, notes: list[str]) -> tuple[str, Path | None]:
    """A local model dir made absolute (VERL's workers start elsewhere); a hub id stays as is."""
    p = Path(path).expanduser()
    if not p.exists() and not path.startswith((".", "/", "~")):
        notes.append(f"the input model {path!r} is not a local directory: VERL takes it as a hub id and downloads it")
        return path, None
    p = p.resolve()
    if not p.is_dir():
        notes.append(f"the input model {p} does not exist here; VERL's nodes must have it at that path")
    return str(p), p if p.is_dir() else None


def _split(records: list[dict], val_size: float, test_size: float, seed: int) -> dict[str, list[dict]]:
    from posttrain.data.split import assignment

    split_of = assignment(len(records), (1 - val_size - test_size, val_size, test_size), seed)
    splits = {name: [r for r, k in zip(records, split_of) if k == i] for i, name in enumerate(SPLITS)}
    for name, size in (("train", 1 - val_size - test_size), ("val", val_size)):
        if not splits[name]:
            raise PosttrainError(f"the {name} split is empty ({len(records)} prompts × {size:g} rounds to 0); "
                                 f"VERL needs {name} prompts: change --val-size/--test-size or add data")
    return splits


def _reward_list(stage, weights, records: list[dict]) -> list[dict] | None:
    """The stage's rewards with the weights TRL uses, for extra_info; None when data_source names the same reward."""
    from posttrain.rewards.adapters import reward_for_source

    weights = weights or [r.weight for r in stage.rewards]
    if len(weights) != len(stage.rewards):
        raise ConfigError(f"stages.{stage.name}.trainer.reward_weights: {len(weights)} weights for "
                          f"{len(stage.rewards)} rewards")
    if any(r.model for r in stage.rewards):
        raise ConfigError(f"stages.{stage.name}.rewards: a reward model is scored in posttrain's GRPO stage; "
                          "VERL's compute_score takes reward functions only")
    rewards = [{"name": _absolute_reward(r.name), "weight": float(w)} for r, w in zip(stage.rewards, weights)]
    if len(rewards) == 1 and rewards[0]["weight"] == 1.0:
        try:
            if all(reward_for_source(r["data_source"]) == rewards[0]["name"] for r in records):
                return None
        except ValueError:
            pass
    return rewards


def _absolute_reward(name: str) -> str:
    """A reward in a .py file, by absolute path: VERL's reward workers do not start in this directory."""
    where, sep, function = name.rpartition(":")
    return f"{Path(where).resolve()}{sep}{function}" if where.endswith(".py") else name


def _longest_prompt(records, tokenizer_dir, template, trust_remote_code, notes) -> int:
    """The longest prompt in tokens, chat template applied as VERL applies it (TRL never cuts a prompt)."""
    if tokenizer_dir is None:
        notes.append(f"no local tokenizer to measure the prompts with: data.max_prompt_length={DEFAULT_PROMPT_LENGTH} "
                     f"(pass --max-prompt-length, or override data.max_prompt_length)")
        return DEFAULT_PROMPT_LENGTH
    from posttrain.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_dir), template=template, trust_remote_code=trust_remote_code)
    texts = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in records]
    longest = max(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    notes.append(f"data.max_prompt_length={longest}: the longest prompt, measured with the tokenizer in "
                 f"{tokenizer_dir}")
    return longest


def _overrides(stage, config, args, out_dir: Path, model_path: str, train_rows: int, gpus: int, nodes: int,
               max_prompt_length: int, notes: list[str]) -> tuple[list[str], list[str]]:
    """GRPOConfig -> Hydra overrides for verl.trainer.main_ppo, and warnings for settings VERL cannot follow."""
    explicit = stage.trainer
    where = f"stages.{stage.name}.trainer"
    world, n = gpus * nodes, args.num_generations
    per_device, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
    # TRL counts completions: one optimizer step takes per_device × accumulation × GPUs of them, one generation
    # round per_device × GPUs × steps_per_generation (or generation_batch_size). VERL counts prompts, n each.
    generated = args.generation_batch_size  # plan() sized it for this world
    step = per_device * accumulation * world
    if step % n:
        raise PosttrainError(
            f"{where}: per_device_train_batch_size × gradient_accumulation_steps × GPUs = {per_device} × "
            f"{accumulation} × {world} = {step} completions per optimizer step, not a multiple of num_generations "
            f"({n}); VERL updates on whole groups of a prompt's completions")
    if generated % step:
        raise PosttrainError(f"{where}: a generation round of {generated} completions is not a whole number of "
                             f"optimizer steps of {step} completions; VERL cannot split it")
    prompts_per_round, prompts_per_update = generated // n, step // n
    updates = generated // step * args.num_iterations  # TRL optimizer steps per VERL training step
    steps_per_epoch = train_rows // prompts_per_round  # VERL drops the last partial batch
    if not steps_per_epoch:
        raise PosttrainError(f"the train split has {train_rows} prompts, fewer than data.train_batch_size "
                             f"({prompts_per_round} prompts per step): VERL would train no step; add data or make "
                             f"the batch smaller")

    def verl_steps(trl_steps: float) -> int:
        return max(1, math.ceil(trl_steps / updates))

    o: dict[str, object] = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.norm_adv_by_std_in_grpo": str(args.scale_rewards).lower() not in ("none", "false"),
        "data.train_files": str(out_dir / "train.parquet"),
        "data.val_files": str(out_dir / "val.parquet"),
        "data.prompt_key": "prompt",
        "data.train_batch_size": prompts_per_round,
        "data.max_prompt_length": max_prompt_length,
        "data.max_response_length": args.max_completion_length,
        "data.truncation": "error",  # TRL never cuts a prompt; VERL refuses one longer than max_prompt_length
        "data.shuffle": bool(args.shuffle_dataset),
        "++data.seed": args.seed,
        "actor_rollout_ref.model.path": model_path,
        "actor_rollout_ref.model.trust_remote_code": config.trust_remote_code,
        "actor_rollout_ref.actor.optim.lr": args.learning_rate,
        "actor_rollout_ref.actor.optim.weight_decay": args.weight_decay,
        "actor_rollout_ref.actor.ppo_mini_batch_size": prompts_per_update,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": per_device,
        "actor_rollout_ref.actor.ppo_epochs": args.num_iterations,
        "actor_rollout_ref.actor.use_kl_loss": args.beta != 0,
        "actor_rollout_ref.actor.kl_loss_coef": args.beta,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",  # TRL's k3 estimator
        "actor_rollout_ref.actor.clip_ratio_low": args.epsilon,
        "actor_rollout_ref.actor.clip_ratio_high": args.epsilon_high if args.epsilon_high is not None else args.epsilon,
        "actor_rollout_ref.actor.loss_agg_mode": LOSS_AGG.get(args.loss_type, "token-mean"),
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": per_device,
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": n,
        "actor_rollout_ref.rollout.temperature": args.temperature,
        "actor_rollout_ref.rollout.top_p": args.top_p,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": per_device,
    }
    warnings = [f"{key} (set in {where}) has no VERL counterpart in this mapping; it is not carried over"
                for key in explicit if key not in MAPPED and not HARMLESS.match(key)]
    if args.loss_type == "dr_grpo":
        o["++actor_rollout_ref.actor.loss_scale_factor"] = args.max_completion_length  # TRL's constant normaliser
    elif args.loss_type not in LOSS_AGG:
        warnings.append(f"loss_type {args.loss_type!r} has no checked VERL counterpart; VERL uses its PPO-clip loss "
                        f"(see actor_rollout_ref.actor.policy_loss.loss_mode)")
    if str(args.scale_rewards).lower() == "batch":
        warnings.append("scale_rewards 'batch': VERL's GRPO scales by each group's std")
    if "multi_objective_aggregation" in explicit and args.multi_objective_aggregation != "sum_then_normalize":
        warnings.append(f"multi_objective_aggregation {args.multi_objective_aggregation!r}: VERL sums the weighted "
                        f"rewards, then normalises")
    optimizer = str(getattr(args.optim, "value", args.optim))
    if "optim" in explicit and not optimizer.startswith("adamw"):
        warnings.append(f"optim {optimizer!r}: VERL trains with AdamW")
    if "top_k" in explicit and args.top_k:
        o["actor_rollout_ref.rollout.top_k"] = args.top_k
    if "entropy_coef" in explicit:
        o["actor_rollout_ref.actor.entropy_coeff"] = args.entropy_coef
    if args.max_grad_norm != 1.0:
        o["actor_rollout_ref.actor.optim.clip_grad"] = args.max_grad_norm
    if "adam_beta1" in explicit or "adam_beta2" in explicit:
        o["actor_rollout_ref.actor.optim.betas"] = [args.adam_beta1, args.adam_beta2]
    if "gradient_checkpointing" in explicit or "activation_checkpointing" in explicit:
        o["actor_rollout_ref.model.enable_gradient_checkpointing"] = bool(
            explicit.get("activation_checkpointing", explicit.get("gradient_checkpointing")))
    scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if scheduler == "cosine":
        o["++actor_rollout_ref.actor.optim.lr_scheduler_type"] = "cosine"
    elif scheduler not in ("constant", "constant_with_warmup"):
        (warnings if "lr_scheduler_type" in explicit else notes).append(
            f"lr_scheduler_type {scheduler!r} has no VERL (FSDP) counterpart: the learning rate stays constant "
            f"after warmup (VERL has constant and cosine)")
    if args.warmup_steps and args.warmup_steps < 1:
        o["actor_rollout_ref.actor.optim.lr_warmup_steps_ratio"] = args.warmup_steps
    elif args.warmup_steps:
        o["actor_rollout_ref.actor.optim.lr_warmup_steps"] = verl_steps(args.warmup_steps)

    epochs = args.num_train_epochs
    if args.max_steps and args.max_steps > 0:
        total = verl_steps(args.max_steps)
        o["trainer.total_epochs"] = math.ceil(total / steps_per_epoch)
        o["trainer.total_training_steps"] = total
    else:
        o["trainer.total_epochs"] = math.ceil(epochs)
        if epochs != math.ceil(epochs):
            o["trainer.total_training_steps"] = max(1, math.ceil(epochs * steps_per_epoch))
    total = o.get("trainer.total_training_steps") or steps_per_epoch * o["trainer.total_epochs"]
    o["trainer.save_freq"] = _frequency(args.save_strategy, args.save_steps, steps_per_epoch, total, verl_steps)
    o["trainer.test_freq"] = _frequency(args.eval_strategy, args.eval_steps or args.logging_steps, steps_per_epoch,
                                        total, verl_steps)
    if args.save_total_limit:
        o["trainer.max_actor_ckpt_to_keep"] = args.save_total_limit
    o["trainer.default_local_dir"] = str(out_dir / "checkpoints")
    o["trainer.n_gpus_per_node"] = gpus
    o["trainer.nnodes"] = nodes
    o["trainer.project_name"] = config.name
    o["trainer.experiment_name"] = args.run_name or stage.name
    report_to = [args.report_to] if isinstance(args.report_to, str) else args.report_to or []
    trackers = [t for t in report_to if t not in ("none", "all")]
    warnings += [f"report_to {t!r} has no VERL logger" for t in trackers if t not in LOGGERS]
    o["trainer.logger"] = ["console"] + [t for t in trackers if t in LOGGERS]

    if stage.finetuning in ("lora", "qlora"):
        lora = stage.lora
        o["actor_rollout_ref.model.lora_rank"] = lora.r
        o["actor_rollout_ref.model.lora_alpha"] = lora.alpha if lora.alpha is not None else 2 * lora.r
        targets = lora.target_modules
        if isinstance(targets, str) and targets not in ("all", "all-linear"):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        o["actor_rollout_ref.model.target_modules"] = "all-linear" if targets in ("all", "all-linear") else targets
        if stage.finetuning == "qlora":
            warnings.append("finetuning qlora: VERL has no 4-bit base; it trains LoRA on a bf16 base")
        if "dropout" in stage.lora.model_fields_set:
            warnings.append("lora.dropout has no VERL (FSDP) counterpart; VERL's LoRA has no dropout")
    return [f"{key}={_hydra(value)}" for key, value in o.items()], warnings


def _frequency(strategy, steps, steps_per_epoch: int, total: int, verl_steps) -> int:
    strategy = getattr(strategy, "value", strategy)
    if strategy == "epoch":
        return steps_per_epoch
    if strategy in ("steps", "best") and steps:
        return max(1, round(steps * total)) if steps < 1 else verl_steps(steps)
    return -1


def _hydra(value) -> str:
    """A value as a Hydra command-line override writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_/.~][\w./~+-]*", text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    return "'" + text.replace("'", "\\'").replace("${", "\\${") + "'"  # Hydra: quotes escaped, no interpolation


def _script(stage, config: PipelineConfig, overrides: list[str], out_dir: Path) -> str:
    from posttrain.rewards import adapters

    reward_file = Path(adapters.__file__).resolve()
    lines = [
        "#!/usr/bin/env bash",
        f"# GRPO stage {stage.name} of pipeline {config.name}, prepared by `posttrain verl prepare` for VERL.",
        "# Run it where `ray status` shows the cluster (or on one machine): bash run_verl.sh [Hydra overrides];",
        "# overrides given to the script come last and win over the ones below.",
        f"# Override keys checked against VERL {VERL_VERSION} (verl/trainer/config/_generated_ppo_trainer.yaml);",
        "# `++key=value` keys are newer than some older releases, which accept and ignore them.",
        "# Batch sizes: TRL counts completions (per_device_train_batch_size x gradient_accumulation_steps x GPUs",
        "# per optimizer step), VERL counts prompts, each sampled rollout.n times: data.train_batch_size and",
        "# actor.ppo_mini_batch_size are those completions divided by num_generations; step counts (save, test,",
        "# max steps) are in VERL training steps, one generation round each.",
        "# The reward is posttrain's compute_score, loaded by path: every Ray node needs posttrain installed",
        "# and this file at the same path (or override custom_reward_function.path).",
        "set -euo pipefail",
        "",
    ]
    env = _search_env(stage, out_dir)
    if env:
        lines += ["# the study-search rewards' settings, for this process and, through Ray's runtime_env, every worker",
                  *(f"export {name}={shlex.quote(value)}" for name, value in env.items()), ""]
        overrides = overrides + [f"++ray_kwargs.ray_init.runtime_env.env_vars.{name}={_hydra(value)}"
                                 for name, value in env.items()]
    reward = [f"custom_reward_function.path={_hydra(str(reward_file))}", "custom_reward_function.name=compute_score"]
    lines += ["# VERL releases with reward/reward.yaml in their config read reward.custom_reward_function and ignore",
              "# the top-level key; older ones know only the top-level key.",
              "REWARD=(", *(f"    {shlex.quote(item)}" for item in reward), ")",
              f"if python3 -c {shlex.quote(_NEW_REWARD_LAYOUT)} 2>/dev/null; then",
              "    REWARD+=(", *(f"        {shlex.quote('reward.' + item)}" for item in reward), "    )", "fi", "",
              "python3 -m verl.trainer.main_ppo \\",
              *(f"    {shlex.quote(item)} \\" for item in overrides),
              '    "${REWARD[@]}" \\', '    "$@"', ""]
    return "\n".join(lines)


def _search_env(stage, out_dir: Path) -> dict[str, str]:
    """The stage's study-search settings as the environment variables a reward worker reads (rewards/search)."""
    from posttrain.rewards.search.index import corpus_index

    env = {}
    if stage.search_corpus:  # prepare indexes the corpus into out_dir once the data is written
        env["POSTTRAIN_SEARCH_INDEX"] = str(Path(corpus_index(stage.search_corpus, out_dir, build=False)).resolve())
    for field, name, is_path in (("search_index", "POSTTRAIN_SEARCH_INDEX", True),
                                 ("search_backend", "POSTTRAIN_SEARCH_BACKEND", False),
                                 ("search_cache", "POSTTRAIN_SEARCH_CACHE", True)):
        value = getattr(stage, field, None)
        if value:
            env[name] = str(Path(value).expanduser().resolve()) if is_path else str(value)
    return env


def _write(out_dir: Path, splits: dict[str, list[dict]], rewards, script: str) -> dict[str, int]:
    """Every file into a scratch dir first, then renamed into place: a failure leaves nothing half-written."""
    import pyarrow as pa

    from posttrain.data.formats import get_format, writer
    from posttrain.data.io import write_records
    from posttrain.rewards.adapters import _SPLIT_SUFFIX, REWARDS_KEY

    to_row = writer(get_format("verl"))
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    try:
        with tempfile.TemporaryDirectory(prefix=".verl-prepare.", dir=out_dir) as scratch:
            scratch = Path(scratch)
            for split, records in splits.items():
                if not records:
                    continue
                rows = []
                for index, record in enumerate(records):
                    extra = {**record["extra_info"], "split": split, "index": index}
                    if rewards:
                        extra[REWARDS_KEY] = rewards
                    task = _SPLIT_SUFFIX.sub("", record["data_source"])
                    rows.append(to_row({**record, "data_source": f"{task}_{split}", "extra_info": extra}))
                try:
                    counts[split] = write_records(scratch / f"{split}.parquet", rows)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
                    raise PosttrainError(f"{split}.parquet: the records do not fit one parquet table ({e}); VERL's "
                                         f"parquet needs ground_truth and extra_info of one shape in every row"
                                         ) from None
            (scratch / "run_verl.sh").write_text(script, encoding="utf-8")
            (scratch / "run_verl.sh").chmod(0o755)
            for name in OUTPUTS:
                if (scratch / name).exists():
                    os.replace(scratch / name, out_dir / name)
                elif (out_dir / name).exists():
                    (out_dir / name).unlink()  # a test split from an earlier prepare, now empty
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return {split: counts.get(split, 0) for split in SPLITS}
