"""LLaMA-Factory's method keys (freeze and OFT tuning, LoRA's variants, DFT loss, GaLore, APOLLO, ...) as the
posttrain, peft and transformers settings that do the same.

Each key maps to what really applies it: `freeze_*` to the stage's `freeze:`
block (models/finetuning.py), `oft_*` to peft's OFT, `use_rslora`/`use_dora`/
`pissa_init` to peft's LoraConfig, `loraplus_*` to peft's LoRA+ optimizer and
`use_muon` to torch's Muon (training/optimizers.py), `use_dft_loss` to TRL's
DFT loss, `use_galore`/`use_apollo` to transformers' GaLore and APOLLO
optimizers (`optim`, `optim_target_modules`, `optim_args`; the `methods`
extra installs their packages). Each is tested to apply. A key with no
equivalent in these libraries is named in a warning: BAdam, Adam-mini,
LLaMA Pro's block expansion, LLaMA-Factory's own ASFT and EAFT losses.
`pissa_convert` is what posttrain always does (training/finish.py).
"""

from __future__ import annotations

FREEZE = {"freeze_trainable_layers": "trainable_layers", "freeze_trainable_modules": "trainable_modules",
          "freeze_extra_modules": "extra_modules"}
OFT = {"oft_rank": "r", "oft_block_size": "block_size", "module_dropout": "module_dropout"}
LORA_VARIANTS = {"use_rslora": "rslora", "use_dora": "dora"}
# LLaMA-Factory's vision-language freezing: text-only models have no tower or projector
VISION = {"freeze_vision_tower": True, "freeze_multi_modal_projector": True, "freeze_language_model": False}
GALORE = {"galore_rank": "rank", "galore_update_interval": "update_proj_gap", "galore_scale": "scale",
          "galore_proj_type": "proj_type"}
APOLLO = {"apollo_rank": "rank", "apollo_update_interval": "update_proj_gap", "apollo_scale": "scale",
          "apollo_proj": "proj", "apollo_proj_type": "proj_type", "apollo_scale_type": "scale_type",
          "apollo_scale_front": "scale_front"}
LORA_PLUS = {"loraplus_lr_ratio": "plus_lr_ratio", "loraplus_lr_embedding": "plus_lr_embedding"}
NO_EQUIVALENT = ("use_badam", "use_adam_mini", "use_llama_pro", "use_asft_loss",
                 "use_eaft_loss")
KEYS = {*FREEZE, *OFT, *LORA_VARIANTS, *LORA_PLUS, "use_muon", "pissa_convert", *VISION, *GALORE, *APOLLO, *NO_EQUIVALENT, "oft_target", "pissa_init",
        "pissa_iter", "use_dft_loss", "use_galore", "galore_target", "galore_layerwise", "use_apollo",
        "apollo_target", "apollo_layerwise", "pure_bf16", "badam_mode", "badam_start_block", "badam_switch_mode",
        "badam_switch_interval", "badam_update_ratio", "badam_mask_mode", "badam_verbose"}


def translate(recipe: dict, kind: str, finetuning: str, stage: dict, lora: dict, trainer: dict, warn, fail) -> None:
    """Put the recipe's method keys where they apply: the stage's freeze/oft/lora blocks or its trainer."""
    given = {key: recipe[key] for key in KEYS if key in recipe}
    _block(given, FREEZE, stage.setdefault("freeze", {}), "freeze", finetuning, warn)
    _block(given, OFT, stage.setdefault("oft", {}), "oft", finetuning, warn)
    if "oft_target" in given:
        given.pop("oft_target")
        warn("oft_target", "LLaMA-Factory takes OFT's target modules from lora_target, and so does posttrain; "
                           "ignored")
    if finetuning == "oft" and "lora_target" in recipe:
        stage["oft"]["target_modules"] = lora.pop("target_modules", "all-linear")
    for key, default in VISION.items():
        if given.pop(key, default) != default:
            warn(key, "posttrain trains text-only models, which have no vision tower or projector; ignored")
    for key, field in LORA_VARIANTS.items():
        if given.pop(key, False):
            _lora_only(key, finetuning, fail)
            lora[field] = True
    plus = {key: given.pop(key) for key in LORA_PLUS if given.get(key) is not None}
    if "loraplus_lr_ratio" in plus:
        _lora_only("loraplus_lr_ratio", finetuning, fail)
        lora.update({LORA_PLUS[key]: float(value) for key, value in plus.items()})
    elif plus:
        warn("loraplus_lr_embedding", "LoRA+ is off without loraplus_lr_ratio; ignored")
    for key in LORA_PLUS:
        given.pop(key, None)
    if given.pop("use_muon", False):
        stage["optimizer"] = "muon"  # torch.optim.Muon on the hidden matrices, AdamW on the rest, as LLaMA-Factory
    if given.pop("pissa_init", False):
        _lora_only("pissa_init", finetuning, fail)
        iterations = int(given.pop("pissa_iter", 16))
        lora["init"] = "pissa" if iterations == -1 else f"pissa_niter_{iterations}"
    given.pop("pissa_iter", None)
    # posttrain saves every PiSSA adapter converted for the unchanged base (training/finish.py): the only base it keeps
    if given.pop("pissa_convert", True) is False and recipe.get("pissa_init"):
        warn("pissa_convert", "posttrain always saves a PiSSA adapter converted to plain LoRA on the original base "
                              "(it keeps no residual base to load the unconverted one on); ignored")
    if given.pop("use_dft_loss", False):
        if kind != "sft":
            fail("use_dft_loss", f"LLaMA-Factory's DFT loss is for stage sft; this is stage type {kind}")
        trainer["loss_type"] = "dft"  # TRL's Dynamic Fine-Tuning loss: each token's NLL weighted by its probability
    _low_rank_optimizer(given, "galore", GALORE, finetuning, trainer, fail)
    _low_rank_optimizer(given, "apollo", APOLLO, finetuning, trainer, fail)
    given.pop("pure_bf16", None)  # LLaMA-Factory's bf16 weights without fp32 masters: the pipeline's dtype: bf16
    for key, value in given.items():
        if value not in (None, False, 0) and (key in NO_EQUIVALENT or key.startswith("badam_") and
                                              recipe.get("use_badam")):
            warn(key, "no equivalent in peft, TRL or transformers; ignored")


def _block(given: dict, keys: dict, block: dict, method: str, finetuning: str, warn) -> None:
    for key, field in keys.items():
        if key not in given:
            continue
        value = given.pop(key)
        if finetuning != method:
            warn(key, f"finetuning_type is {finetuning}, not {method}; ignored")
        elif field == "extra_modules":
            block[field] = [m.strip() for m in str(value).split(",") if m.strip()] if isinstance(value, str) \
                else list(value)
        else:
            block[field] = value


def _lora_only(key: str, finetuning: str, fail) -> None:
    if finetuning not in ("lora", "qlora"):
        fail(key, f"a LoRA option, and finetuning_type is {finetuning}")


def _low_rank_optimizer(given: dict, name: str, keys: dict, finetuning: str, trainer: dict, fail) -> None:
    """transformers' GaLore/APOLLO: `optim` galore_adamw(_layerwise) or apollo_adamw(_layerwise), the targets, and
    the projection settings as `optim_args`."""
    if not given.pop(f"use_{name}", False):
        for key in [*keys, f"{name}_target", f"{name}_layerwise"]:
            given.pop(key, None)
        return
    if finetuning in ("lora", "qlora", "oft"):
        fail(f"use_{name}", f"{name} trains the full weights through a low-rank optimizer; it does not go with "
                            f"finetuning_type {finetuning}")
    layerwise = given.pop(f"{name}_layerwise", False)
    trainer["optim"] = f"{name}_adamw{'_layerwise' if layerwise else ''}"
    target = given.pop(f"{name}_target", "all")
    trainer["optim_target_modules"] = "all-linear" if target == "all" else [t.strip() for t in str(target).split(",")]
    args = {field: given.pop(key) for key, field in keys.items() if key in given}
    if args:
        trainer["optim_args"] = ",".join(f"{k}={v}" for k, v in args.items())
