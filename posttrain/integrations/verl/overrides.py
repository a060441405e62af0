"""A GRPO stage's GRPOConfig as VERL's Hydra overrides: what maps, what VERL lacks, and how each value is written."""

from __future__ import annotations

import math
import re
from pathlib import Path

from posttrain.errors import PosttrainError

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
def hydra_overrides(stage, config, args, out_dir: Path, model_path: str, train_rows: int, gpus: int, nodes: int,
               max_prompt_length: int, notes: list[str]) -> tuple[list[str], list[str]]:
    """GRPOConfig -> Hydra overrides for verl.trainer.main_ppo, and warnings for settings VERL cannot follow."""
    explicit = stage.trainer
    where = f"stages.{stage.name}.trainer"
    if stage.optimizer != "default" or stage.lora.plus_lr_ratio is not None:
        raise PosttrainError(f"stages.{stage.name}: optimizer: {stage.optimizer} / lora.plus_lr_ratio are built by "
                             "posttrain's trainer, and VERL's actor has its own optimizer; drop them for VERL")
    if stage.finetuning in ("freeze", "oft"):  # VERL's actor trains the whole model or a LoRA adapter
        raise PosttrainError(f"stages.{stage.name}.finetuning: {stage.finetuning} has no VERL counterpart (its "
                             "actor trains the full model or LoRA); use full or lora, or train the stage with TRL")
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
        # a list, as VERL 0.9 takes it (its SGLang rollout refuses a regex); run_verl.sh turns it into the regex
        # string for older releases, which type the field Optional[str] (script.py)
        o["actor_rollout_ref.model.target_modules"] = "all-linear" if targets in ("all", "all-linear") else targets
        if stage.finetuning == "qlora":
            warnings.append("finetuning qlora: VERL has no 4-bit base; it trains LoRA on a bf16 base")
        if "dropout" in stage.lora.model_fields_set:
            warnings.append("lora.dropout has no VERL (FSDP) counterpart; VERL's LoRA has no dropout")
    return [f"{key}={hydra_value(value)}" for key, value in o.items()], warnings


def _frequency(strategy, steps, steps_per_epoch: int, total: int, verl_steps) -> int:
    strategy = getattr(strategy, "value", strategy)
    if strategy == "epoch":
        return steps_per_epoch
    if strategy in ("steps", "best") and steps:
        return max(1, round(steps * total)) if steps < 1 else verl_steps(steps)
    return -1


def module_pattern(modules: list[str]) -> str:
    """A LoRA module list as one string, for VERL releases before 0.9 that type model.target_modules
    `Optional[str]` (a list fails their config conversion): the regex peft full-matches against each module's
    name, for the same modules."""
    return "(.*\\.)?(" + "|".join(re.escape(m) for m in modules) + ")"


def hydra_value(value) -> str:
    """A value as a Hydra command-line override writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_/.~][\w./~+-]*", text) and text.lower() not in ("true", "false", "null", "nan", "inf"):
        return text
    return "'" + text.replace("'", "\\'").replace("${", "\\${") + "'"  # Hydra: quotes escaped, no interpolation


