"""LLaMA-Factory recipes of every training stage, run as they are.

Teams moving from LLaMA-Factory bring a recipe YAML (`stage: sft|pt|rm|dpo|kto`,
`finetuning_type`, `dataset: a,b` naming entries of `data/dataset_info.json`,
TrainingArguments keys) and expect `posttrain train RECIPE.yaml` to train the
same model without edits. `to_pipeline` turns such a recipe into the raw dict
of a one-stage posttrain pipeline (STAGE_TYPES: `rm` is posttrain's
reward_model, `dpo` is dpo, orpo or simpo by its `pref_loss`; the model ends
at `<output_dir>/<stage>/model`), which `config.load_config` then validates
like any pipeline file.

The translation is a table: each key is renamed into the pipeline, handled
by a small rule (the preference keys: preference.py), passed to the stage's
TRL config class as is when it is one of its fields, or named in a warning;
none is dropped silently. Where LLaMA-Factory's
defaults differ from posttrain's (LoRA unless told otherwise, LoRA dropout 0,
cutoff 2048, no packing, gradient checkpointing on) the recipe gets
LLaMA-Factory's, so it trains as it did there. Keys that need what this
machine lacks (bf16/fp16/tf32 without CUDA, DeepSpeed, flash-attention,
a tracker that is not installed) are dropped with a warning, so a GPU recipe
still runs on a laptop; where DeepSpeed and CUDA are present, `deepspeed:`
becomes the stage's `deepspeed:` (docs/distributed.md). Dataset directories
stay relative to the working directory, as in LLaMA-Factory.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import typing
from pathlib import Path

from posttrain import stages
from posttrain.config.schema import trainer_config_class
from posttrain.errors import ConfigError, cut
from posttrain.integrations.llamafactory import methods, predict, preference, unapplied, v1
from posttrain.integrations.llamafactory.recipe_values import names, pipeline_name
from posttrain.models.templates import TEMPLATES

log = logging.getLogger("posttrain")

# LLaMA-Factory's stage -> posttrain's stage type (a dpo recipe's pref_loss may pick orpo or simpo instead)
STAGE_TYPES = {"sft": "sft", "pt": "pt", "rm": "reward_model", "dpo": "dpo", "kto": "kto"}
# LLaMA-Factory's defaults where they differ from posttrain's.
DEFAULTS = {"finetuning_type": "lora", "cutoff_len": 2048, "disable_gradient_checkpointing": False}
SFT_DEFAULTS = {"packing": False}  # LLaMA-Factory packs pt's text always, and nothing but sft's otherwise
SFT_ONLY = ("packing", "neat_packing", "train_on_prompt", "mask_history")  # LLaMA-Factory refuses them elsewhere
LORA_DEFAULTS = {"lora_dropout": 0.0}  # rank 8, alpha 2*rank and target `all` are posttrain's defaults too

# LLaMA-Factory key -> (section of the pipeline, posttrain key)
RENAMES = {
    "model_name_or_path": ("top", "model"),
    "trust_remote_code": ("top", "trust_remote_code"),
    "seed": ("top", "seed"),  # the sft stage hands it to SFTConfig; it also seeds the val_size split
    "output_dir": ("top", "output_dir"),
    "plot_loss": ("stage", "plot_loss"),
    "lora_rank": ("lora", "r"),
    "lora_alpha": ("lora", "alpha"),
    "lora_dropout": ("lora", "dropout"),
    "cutoff_len": ("trainer", "max_length"),
    "preprocessing_num_workers": ("trainer", "dataset_num_proc"),
    "evaluation_strategy": ("trainer", "eval_strategy"),  # its name before transformers 4.46
}
# Read by to_pipeline itself, outside the table.
HANDLED = {"stage", "finetuning_type", "quantization_bit", "quantization_method", "dataset", "dataset_dir",
           "eval_dataset", "max_samples", "val_size", "warmup_ratio", "create_new_adapter", *preference.KEYS,
           *methods.KEYS, *predict.KEYS}
LORA_KEYS = {"lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target"}
PRECISION = {"bf16": "bf16", "fp16": "fp32", "tf32": None}  # kept key -> the dtype to load the model in
FLASH = {"fa2": ("flash_attention_2", "flash_attn"), "fa3": ("flash_attention_3", "flash_attn_interface"),
         "sdpa": ("sdpa", None), "disabled": ("eager", None), "auto": (None, None)}
NO_EVAL_DATA = ("eval_strategy", "load_best_model_at_end")  # fail in the trainer without evaluation data
SHIPPED_ZERO = {"ds_z2_config.json": "zero2", "ds_z3_config.json": "zero3"}  # LLaMA-Factory examples/deepspeed/


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def has_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def trackers() -> list[str]:
    from transformers.integrations import get_available_reporting_integrations

    return get_available_reporting_integrations()


def trainer_fields(kind: str) -> set[str]:
    config_class = trainer_config_class(stages.config_class(kind).trainer_class)
    return {f.name for f in dataclasses.fields(config_class) if f.init}


def finetuning_kinds(kind: str) -> tuple[str, ...]:
    """The `finetuning:` values stage type `kind` takes (full, lora, qlora)."""
    return typing.get_args(stages.config_class(kind).model_fields["finetuning"].annotation)


def is_recipe(raw: dict) -> bool:
    """A LLaMA-Factory recipe: v0's (`model_name_or_path`, `stage`) or v1's (`model`, `train_dataset`)."""
    return ("model_name_or_path" in raw and "stage" in raw) or v1.is_recipe(raw)


def to_pipeline(raw: dict, path: Path | None = None) -> dict:
    """The raw posttrain pipeline dict for a LLaMA-Factory recipe; warnings go to the `posttrain` logger."""
    where = f"{path}: " if path else ""
    ignored: dict[str, str] = {}  # key -> why it is not applied: one summary at the end

    def warn(key, why):
        ignored[key] = f"{ignored[key]}; {why}" if key in ignored else why

    def fail(key, why):
        raise ConfigError(f"{where}{key}: {why}")

    given = {k: v for k, v in raw.items() if v is not None and v != ""}  # LLaMA-Factory reads empty as unset
    for key, value in given.items():
        if not isinstance(key, str):
            fail(cut(repr(key), 80), "a recipe key is a name")
        problem = unapplied.wrong_type(key, value)
        if problem:
            fail(key, problem)
    allowed = _compat(given.pop("compat", {}), fail)
    if v1.is_recipe(given):
        return v1.to_pipeline(given, warn, fail, lambda: _report(where, given, ignored, allowed), cuda, allowed)
    if predict.only(given):
        return predict.pipeline(given, warn, fail, _data, _template, lambda: _report(where, given, ignored, allowed))
    name = given.get("stage")
    if name not in STAGE_TYPES:
        rl = "; its RL stage is grpo (posttrain's own pipeline files)" if name == "ppo" else ""
        fail("stage", f"{raw.get('stage')!r} is not supported; posttrain runs LLaMA-Factory recipes of stage "
                      f"{', '.join(STAGE_TYPES)}{rl}")
    kind = preference.stage_type(name, given, fail) or STAGE_TYPES[name]
    defaults = {**DEFAULTS, **(SFT_DEFAULTS if kind == "sft" else {})}
    finetuning = _finetuning({**defaults, **given}, finetuning_kinds(kind), kind, fail, warn)
    recipe = {**defaults, **(LORA_DEFAULTS if finetuning in ("lora", "qlora") else {}), **given}
    out = {"top": {}, "stage": {"name": name, "type": kind, "finetuning": finetuning}, "trainer": {}, "lora": {},
           "after": []}
    top, stage, trainer, lora = out["top"], out["stage"], out["trainer"], out["lora"]

    rules = {
        "do_train": lambda v: v or warn("do_train", "false, but posttrain always trains; ignored"),
        "lora_target": lambda v: lora.update(target_modules="all-linear" if v == "all" else names(v)),
        "additional_target": lambda v: lora.update(modules_to_save=names(v)),
        "template": lambda v: _template(v, stage, warn),
        "deepspeed": lambda v: _deepspeed(v, stage, warn),
        "ddp_backend": lambda v: warn("ddp_backend", "posttrain picks it when launching with --nproc (nccl on GPUs, "
                                                     "gloo on CPU processes); ignored"),
        "overwrite_output_dir": lambda v: v and warn(
            "overwrite_output_dir", "posttrain reruns a stage only when its fingerprint (config, input model, data) "
                                    "changed, and `posttrain train --force` reruns everything; ignored"),
        "packing": lambda v: trainer.update(packing=bool(v)),  # posttrain's packing is always exact
        "neat_packing": lambda v: trainer.update(packing=bool(v) or trainer.get("packing", False)),
        "train_on_prompt": lambda v: trainer.update(assistant_only_loss=not v),
        "disable_gradient_checkpointing": lambda v: trainer.update(gradient_checkpointing=not v),
        "flash_attn": lambda v: _flash(v, top, warn),
        "enable_liger_kernel": lambda v: _liger(v, trainer, warn),
        "report_to": lambda v: _report_to(v, trainer, warn),
        **{key: (lambda v, key=key: _precision(key, v, top, trainer, warn)) for key in PRECISION},
    }
    if kind != "sft":
        rules.update(_stage_rules(kind, stage, fail, warn))
    fields = trainer_fields(kind)
    for key, value in recipe.items():
        if key in HANDLED:
            continue
        if key in LORA_KEYS and finetuning not in ("lora", "qlora") and not (key, finetuning) == ("lora_target", "oft"):
            warn(key, f"finetuning_type is {finetuning}; ignored")
        elif key in rules:
            rules[key](value)
        elif key in RENAMES and RENAMES[key][0] == "trainer" and RENAMES[key][1] not in fields:
            warn(key, f"its {stages.config_class(kind).trainer_class.split(':')[1]} has no "
                      f"{RENAMES[key][1]}; ignored")
        elif key in RENAMES:
            out[RENAMES[key][0]][RENAMES[key][1]] = value
        elif key in fields and key != "output_dir":
            trainer[key] = value
        elif key == "adapter_name_or_path":
            _adapter(value, recipe, finetuning, stage, lora, fail)
        elif value not in ([], {}) and not (key in unapplied.CHANGES_TRAINING and not unapplied.changes_training(
                key, value)):  # LLaMA-Factory's default of a key posttrain lacks: nothing is lost
            warn(key, unapplied.reason(key, fields | HANDLED | set(RENAMES) | set(rules)))

    stage["data"] = _data(recipe, "dataset", fail)
    if "eval_dataset" in recipe:
        stage["eval_data"] = _data(recipe, "eval_dataset", fail)
    val_size = recipe.get("val_size", 0)
    if not 0 <= val_size < 1:
        fail("val_size", f"{val_size} reads as a number of examples; posttrain takes a fraction in [0, 1)")
    if val_size:
        stage["val_size"] = val_size
    elif "eval_dataset" not in recipe:
        for key in NO_EVAL_DATA:
            if trainer.get(key) not in (None, False, "no"):
                warn(key, "there is no evaluation data (eval_dataset or val_size); ignored")
                trainer.pop(key)
    ratio = recipe.get("warmup_ratio", 0)
    if not 0 <= ratio < 1:
        fail("warmup_ratio", f"expected a fraction in [0, 1), got {ratio}")
    if ratio and not recipe.get("warmup_steps"):  # as in transformers, warmup_steps > 0 wins
        trainer["warmup_steps"] = float(ratio)  # transformers 5 reads a float below 1 as a ratio

    preference.translate(kind, recipe, trainer, warn)
    methods.translate(recipe, kind, finetuning, stage, lora, trainer, warn, fail)
    predict.after_training(recipe, stage, warn, fail, _data, out)
    for block in ("freeze", "oft"):
        if not stage.get(block):
            stage.pop(block, None)
    if trainer:
        stage["trainer"] = trainer
    if lora and finetuning in ("lora", "qlora"):
        stage["lora"] = lora
    log.info("%sLLaMA-Factory recipe translated (stage type %s)", where, kind)  # where it writes: load_config says
    _report(where, recipe, ignored, allowed)
    return {"name": pipeline_name(top.get("output_dir"), name), **top, "stages": [stage, *out["after"]]}


def _compat(value, fail) -> set[str]:
    """The recipe's `compat: {ignore: [KEY, ...]}`: keys that change training, to go on without."""
    if not isinstance(value, dict) or set(value) - {"ignore"}:
        fail("compat", "expected {ignore: [KEY, ...]}, the keys to train without")
    keys = value.get("ignore", [])
    keys = [keys] if isinstance(keys, str) else keys
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        fail("compat.ignore", "expected a list of recipe keys")
    return set(keys)


def _report(where: str, recipe: dict, ignored: dict[str, str], allowed: set[str]) -> None:
    """One summary of the keys not applied; an error for those that change what is trained, unless allowed."""
    refused = [k for k in ignored if unapplied.changes_training(k, recipe.get(k)) and k not in allowed]
    if refused:
        raise ConfigError(unapplied.refusal(where, refused))
    for key in allowed & set(ignored):
        ignored[key] += " (compat.ignore: trained without it)"
    if ignored:
        log.warning("%s", unapplied.summary(where, ignored))


def _adapter(value, recipe: dict, finetuning: str, stage: dict, lora: dict, fail) -> None:
    """adapter_name_or_path: a LoRA stage goes on training the adapter, as LLaMA-Factory does; with
    create_new_adapter, or for full and freeze tuning, the stage starts from the model with it merged."""
    adapters = names(value)
    if len(adapters) != 1:
        fail("adapter_name_or_path", f"{len(adapters)} adapters; posttrain starts from one (merge the others into "
                                     "the base first with `posttrain export`)")
    if finetuning in ("lora", "qlora") and not recipe.get("create_new_adapter"):
        lora["adapter"] = adapters[0]
    elif finetuning == "oft":
        fail("adapter_name_or_path", "a LoRA adapter, and finetuning_type is oft")
    else:
        stage["model"] = adapters[0]  # an adapter directory as input model is loaded merged into its base


def _stage_rules(kind: str, stage: dict, fail, warn) -> dict:
    """What a recipe key means for a stage other than sft, where it differs from sft's rule."""
    def sft_only(key):
        return lambda v: v and fail(key, f"LLaMA-Factory allows it for stage sft only, and this is stage "
                                         f"{stage['name']}")

    rules = {key: sft_only(key) for key in SFT_ONLY}
    if kind == "pt":  # raw text: packed into blocks of cutoff_len tokens, no chat template
        rules["cutoff_len"] = lambda v: stage.update(block_size=int(v))
        rules["packing"] = lambda v: v or warn("packing", "false, but posttrain's pt stage always packs the text "
                                                          "into blocks of cutoff_len tokens; ignored")
        rules["template"] = lambda v: warn("template", "stage pt trains on raw text, without a chat template; "
                                                       "ignored")
    return rules


def _finetuning(recipe: dict, allowed: tuple[str, ...], stage_type: str, fail, warn) -> str:
    kind, bits = recipe["finetuning_type"], recipe.get("quantization_bit")
    if kind not in allowed:
        fail("finetuning_type", f"{kind!r} is not supported; posttrain's {stage_type} stage does "
                                f"{' or '.join(k for k in allowed if k != 'qlora')}"
                                f"{' (lora with quantization_bit: 4 is qlora)' if 'qlora' in allowed else ''}")
    if bits is None:
        return kind
    if kind != "lora" or int(bits) != 4 or "qlora" not in allowed:
        fail("quantization_bit", f"{bits} with finetuning_type {kind}: posttrain quantizes only for lora, to 4 bits"
                                 f"{'' if 'qlora' in allowed else f', and not for a {stage_type} stage'}")
    method = recipe.get("quantization_method", "bnb")
    if method not in ("bnb", "bitsandbytes"):
        warn("quantization_method", f"{method!r}: posttrain quantizes with bitsandbytes; ignored")
    return "qlora"


def _data(recipe: dict, key: str, fail) -> dict:
    if key not in recipe:
        fail(key, "missing; name the datasets registered in the dataset_dir's dataset_info.json")
    spec = {"dataset": ",".join(names(recipe[key])), "dataset_dir": str(recipe.get("dataset_dir", "data"))}
    if int(recipe.get("max_samples", -1)) > 0:  # LLaMA-Factory applies it to eval datasets too; -1 means all
        spec["max_samples"] = int(recipe["max_samples"])
    return spec


def _template(value: str, stage: dict, warn) -> None:

    if value in ("default", "empty"):
        return
    if value in TEMPLATES:
        stage["template"] = value
    else:
        warn("template", f"posttrain has no chat template {value!r} (it has {', '.join(TEMPLATES)}); "
                         "the tokenizer's own chat template is used")


def _precision(key: str, value, top: dict, trainer: dict, warn) -> None:
    if not value:
        trainer[key] = value
    elif cuda():
        trainer[key] = value
        if PRECISION[key]:  # fp16 mixed precision needs fp32 master weights
            top["dtype"] = PRECISION[key]
    else:
        warn(key, "needs a CUDA GPU and there is none; this machine trains in fp32; ignored")


def _deepspeed(value: str, stage: dict, warn) -> None:
    """The stage's `deepspeed:` (posttrain/training/engines.py); LLaMA-Factory's own ZeRO-2/3 files, when the recipe
    names them by a path that is not here, are the same files posttrain ships."""
    missing = [what for what, ok in (("the deepspeed package", has_package("deepspeed")), ("a CUDA GPU", cuda()))
               if not ok]
    if missing:
        warn("deepspeed", f"{value} needs {' and '.join(missing)}, which this machine lacks; the stage trains "
                          "without it (plain DDP under --nproc); ignored")
    elif not Path(value).exists() and Path(value).name in SHIPPED_ZERO:
        stage["deepspeed"] = SHIPPED_ZERO[Path(value).name]
    else:
        stage["deepspeed"] = value


def _flash(value: str, top: dict, warn) -> None:
    if value not in FLASH:
        warn("flash_attn", f"unknown value {value!r} (expected {', '.join(FLASH)}); ignored")
        return
    implementation, package = FLASH[value]
    if package and not (cuda() and has_package(package)):
        warn("flash_attn", f"{value} needs a CUDA GPU and the {package} package; the default attention is used")
    elif implementation:
        top["attn_implementation"] = implementation


def _liger(value, trainer: dict, warn) -> None:
    """LLaMA-Factory's enable_liger_kernel is TrainingArguments' use_liger_kernel (Triton kernels: CUDA only)."""
    if not value:
        return
    if not (cuda() and has_package("liger_kernel")):
        warn("enable_liger_kernel", "Liger's kernels need a CUDA GPU and the liger-kernel package; trained without")
    else:
        trainer["use_liger_kernel"] = True


def _report_to(value, trainer: dict, warn) -> None:
    trackers_named = names(value)
    available = set(trackers()) | {"none", "all"}
    missing = [n for n in trackers_named if n not in available]
    if missing:
        warn("report_to", f"{', '.join(missing)} not installed; ignored")
    kept = [n for n in trackers_named if n in available]
    trainer["report_to"] = kept[0] if len(kept) == 1 else (kept or "none")
