"""LLaMA-Factory's keys that posttrain does not apply: why, and which of them change what is trained.

A recipe key posttrain leaves aside is reported with its reason in one summary when the recipe is read (by
`validate` and at the start of a run), never dropped without a word. Most are settings of another part of
LLaMA-Factory (its chat, export, benchmark evaluation, PPO) or of an engine posttrain does not run. A key in
CHANGES_TRAINING, set to anything but LLaMA-Factory's default, changes the model a run produces (a loss, an
optimizer, a vocabulary, the data's rendering or order); training without it would give another model than the
recipe asks for, so it is an error unless the recipe's `compat: {ignore: [KEY]}` or `--allow-ignored KEY` says
to go on without it. The key lists are LLaMA-Factory's hparams as of its main branch (August 2026).
"""

from __future__ import annotations

from posttrain.errors import closest, cut

# key -> LLaMA-Factory's default: any other value changes what is trained
CHANGES_TRAINING = {
    "use_badam": False, "use_adam_mini": False, "use_llama_pro": False, "use_asft_loss": False,
    "use_eaft_loss": False, "fp8": False, "fp8_backend": "auto", "fp8_enable_fsdp_float8_all_gather": False,
    "mask_history": False, "default_system": None, "enable_thinking": True, "preserve_thinking": False,
    "tool_format": None, "mix_strategy": "concat", "interleave_probs": None, "mixture_of_depths": None,
    "moe_aux_loss_coef": None, "rope_scaling": None, "shift_attn": False, "train_from_scratch": False,
    "add_tokens": None, "add_special_tokens": None, "new_special_tokens_config": None,
    "init_special_tokens": "noise_init", "resize_vocab": False, "ignore_pad_token_for_loss": True,
    "disable_shuffling": False, "block_diag_attn": False, "upcast_layernorm": False, "upcast_lmhead_output": False,
    "quantization_type": "nf4", "double_quantization": True, "ref_model": None, "ref_model_adapters": None,
    "ref_model_quantization_bit": None, "adapter_folder": None, "model_revision": "main",
    "early_stopping_steps": None,
}

_GROUPS = {
    "a generation setting of LLaMA-Factory's chat and predict; a training stage does not generate": (
        "do_sample", "temperature", "top_p", "top_k", "num_beams", "max_new_tokens", "repetition_penalty",
        "length_penalty", "skip_special_tokens", "predict_with_generate"),
    "an inference setting of LLaMA-Factory's chat and API; `posttrain serve` and `posttrain chat` take their own": (
        "infer_backend", "infer_dtype", "vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank",
        "vllm_config", "sglang_maxlen", "sglang_mem_fraction", "sglang_tp_size", "sglang_config",
        "sglang_lora_backend", "use_kv_cache"),
    "an export setting of `llamafactory-cli export`; `posttrain export` takes its own options": (
        "export_dir", "export_size", "export_device", "export_quantization_bit", "export_quantization_dataset",
        "export_quantization_nsamples", "export_quantization_maxlen", "export_legacy_format", "export_hub_model_id"),
    "a hub download setting; posttrain downloads with the HF_* environment (HF_HOME, HF_TOKEN)": (
        "cache_dir", "hf_hub_token", "ms_hub_token", "om_hub_token", "download_mode"),
    "a multimodal setting; posttrain trains text-only models": (
        "image_max_pixels", "image_min_pixels", "image_do_pan_and_scan", "crop_to_patches", "video_max_pixels",
        "video_min_pixels", "video_fps", "video_maxlen", "audio_sampling_rate", "use_audio_in_video", "media_dir"),
    "a setting of LLaMA-Factory's benchmark evaluation (`llamafactory-cli eval`); posttrain's eval stage scores "
    "held-out data": ("task", "task_dir", "batch_size", "n_shot", "lang", "save_dir"),
    "a setting of stage ppo; posttrain's RL stage is grpo": (
        "ppo_buffer_size", "ppo_epochs", "ppo_score_norm", "ppo_target", "ppo_whiten_rewards", "reward_model",
        "reward_model_adapters", "reward_model_quantization_bit", "reward_model_type"),
    "a logging or profiling setting posttrain does not have": (
        "enable_torch_profiler", "profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps",
        "profiler_repeat", "profiler_record_shapes", "profiler_profile_memory", "profiler_with_stack",
        "profiler_output_dir", "profile_modules", "print_param_status", "include_effective_tokens_per_second",
        "compute_accuracy", "use_swanlab", "swanlab_project", "swanlab_workspace", "swanlab_run_name",
        "swanlab_mode", "swanlab_api_key", "swanlab_logdir", "swanlab_lark_webhook_url", "swanlab_lark_secret"),
    "an engine or launcher posttrain does not run (it launches with --nproc/--nnodes, accelerate and DeepSpeed); "
    "the same model trains without it": (
        "master_addr", "master_port", "ray_num_workers", "ray_init_kwargs", "use_hyper_parallel",
        "hyper_parallel_args", "hyper_parallel_cp_size", "use_mca", "use_megatron_bridge", "megatron_bridge_args",
        "use_kt", "kt_weight_path", "kt_non_expert_weight_path", "kt_expert_checkpoint_path", "kt_cpu_activation",
        "kt_use_lora_experts", "kt_lora_expert_num", "kt_lora_expert_intermediate_size", "kt_config", "use_unsloth",
        "use_unsloth_gc",
        # Megatron's, through LLaMA-Factory's mca and megatron_bridge stages
        "tensor_model_parallel_size", "pipeline_model_parallel_size", "expert_model_parallel_size",
        "context_parallel_size", "sequence_parallel", "use_distributed_optimizer", "overlap_param_gather",
        "overlap_grad_reduce", "bias_activation_fusion", "apply_rope_fusion", "recompute_granularity",
        "moe_token_dispatcher_type", "moe_grouped_gemm", "use_packed_sequences", "mixed_precision",
        "export_hf_on_finish"),
    "a loading or preprocessing detail posttrain sets itself": (
        "low_cpu_mem_usage", "device_map", "offload_folder", "quantization_device_map", "compute_dtype",
        "model_max_length", "use_fast_tokenizer", "split_special_tokens", "use_reentrant_gc", "overwrite_cache",
        "preprocessing_batch_size", "tokenized_path", "data_shared_file_system", "streaming", "buffer_size",
        "eval_on_each_dataset", "eval_num_beams"),
    "read only with use_asft_loss / use_eaft_loss / use_badam, which posttrain has no equivalent for": (
        "asft_alpha", "eaft_alpha", "badam_mode", "badam_start_block", "badam_switch_mode", "badam_switch_interval",
        "badam_update_ratio", "badam_mask_mode", "badam_verbose"),
}
REASONS = {key: reason for reason, keys in _GROUPS.items() for key in keys}

# the values the translation reads itself, typed as LLaMA-Factory types them (the rest go to a config class, which
# checks its own): a wrong type is an error naming the key, not a TypeError deep inside the translation
_NUMBER, _NAMES = (int, float), (str, list)
TYPES = {
    **dict.fromkeys(("stage", "finetuning_type", "template", "dataset_dir", "quantization_method", "deepspeed",
                     "flash_attn", "pref_loss", "model", "train_dataset", "output_dir", "batching_strategy",
                     "model_class"), str),
    **dict.fromkeys(("dataset", "eval_dataset", "lora_target", "additional_target", "report_to",
                     "adapter_name_or_path"), _NAMES),
    **dict.fromkeys(("max_samples", "quantization_bit", "lora_rank", "lora_alpha", "pissa_iter", "cutoff_len",
                     "per_device_eval_batch_size", "max_new_tokens", "micro_batch_size", "global_batch_size",
                     "freeze_trainable_layers", "oft_rank", "oft_block_size"), int),
    **dict.fromkeys(("val_size", "warmup_ratio", "lora_dropout", "loraplus_lr_ratio", "loraplus_lr_embedding",
                     "pref_beta", "temperature", "top_p", "simpo_gamma", "pref_ftx", "dpo_label_smoothing",
                     "kto_chosen_weight", "kto_rejected_weight", "ld_alpha", "module_dropout"), _NUMBER),
    **dict.fromkeys(("do_train", "do_predict", "do_sample", "create_new_adapter", "use_rslora", "use_dora",
                     "pissa_init", "use_muon", "use_dft_loss", "use_galore", "use_apollo", "packing",
                     "neat_packing", "train_on_prompt", "disable_gradient_checkpointing"), bool),
}
_TYPE_NAMES = {str: "a string", _NAMES: "a name or a list of names", int: "an integer", _NUMBER: "a number",
               bool: "true or false"}


def wrong_type(key: str, value) -> str | None:
    """What is wrong with `value` for `key`, or None when it has the type the translation reads."""
    expected = TYPES.get(key)
    if expected is None or value is None:
        return None
    fits = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
    if expected is _NAMES and isinstance(value, list):
        fits = all(isinstance(item, str) for item in value)
    if expected is _NUMBER and fits:
        fits = value == value and abs(value) != float("inf")  # NaN and infinity are no setting
    return None if fits else f"{cut(repr(value), 80)}; expected {_TYPE_NAMES[expected]}"


_TRAINING_REASON = "changes what is trained, and posttrain has no equivalent"


def reason(key: str, known: set[str]) -> str:
    """Why `key` is not applied; `known` is every key a recipe may hold, for a misspelling's did-you-mean."""
    if key in CHANGES_TRAINING:
        return _TRAINING_REASON
    if key in REASONS:
        return REASONS[key]
    return ("not a key of LLaMA-Factory or of the stage's trainer config"
            f"{closest(key, known | set(REASONS) | set(CHANGES_TRAINING))}")


def changes_training(key: str, value) -> bool:
    return key in CHANGES_TRAINING and value != CHANGES_TRAINING[key]


def summary(where: str, ignored: dict[str, str]) -> str:
    """The one report of a recipe's unapplied keys."""
    lines = [f"  {key}: {why}" for key, why in ignored.items()]
    return f"{where}LLaMA-Factory keys not applied ({len(ignored)}):\n" + "\n".join(lines)


def refusal(where: str, keys: list[str]) -> str:
    return (f"{where}{', '.join(keys)}: {'changes' if len(keys) == 1 else 'change'} what is trained, and posttrain "
            f"has no equivalent, so the run would train another model than the recipe asks for; "
            f"{how_to_go_on(keys)}")


def how_to_go_on(keys: list[str]) -> str:
    """The two ways to train without keys that change training, for every refusal of one."""
    return (f"to train without {'it' if len(keys) == 1 else 'them'}, add `compat: {{ignore: [{', '.join(keys)}]}}` "
            "to the recipe or pass " + " ".join(f"--allow-ignored {k}" for k in keys))
