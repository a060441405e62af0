"""What a stage's `finetuning:` does to the model it trains: a peft adapter (LoRA, QLoRA, OFT), every weight
(full), or some decoder layers trained whole and the rest frozen (freeze, LLaMA-Factory's freeze tuning).

Stages hand `peft_config(stage)` to their TRL trainer and train `prepare(model, stage)`, the loaded model as the
stage trains it (frozen in part, or with an adapter to go on training), so a kind of fine-tuning is written once
for every stage type.
"""

from __future__ import annotations

import logging
import re

from posttrain.errors import ConfigError
from posttrain.models.loading import lora_config, target_modules

log = logging.getLogger("posttrain")

ADAPTERS = ("lora", "qlora", "oft")  # the kinds that train a peft adapter and save it in place of the model


def peft_config(stage, task_type: str = "CAUSAL_LM"):
    """The peft config of the stage's adapter, or None when it trains the model's own weights."""
    if stage.finetuning in ("lora", "qlora"):
        # an adapter to go on training comes with its own config, put on the model by `prepare`
        return None if stage.lora.adapter else lora_config(stage.lora, task_type=task_type)
    if stage.finetuning == "oft":
        from peft import OFTConfig

        oft = stage.oft
        return OFTConfig(r=oft.r, oft_block_size=oft.block_size, target_modules=target_modules(oft.target_modules),
                         module_dropout=oft.module_dropout, task_type=task_type)
    return None


def prepare(model, stage, keep: tuple[str, ...] = ()):
    """The model as the stage trains it: with `finetuning: freeze`, all but the chosen layers frozen (`keep`: a
    new head, such as a reward model's score, stays trainable)."""
    if stage.finetuning == "freeze":
        freeze(model, stage.freeze, keep=keep, where=f"stages.{stage.name}.freeze")
    if stage.finetuning in ("lora", "qlora") and stage.lora.adapter:
        return continued_adapter(model, stage.lora.adapter, f"stages.{stage.name}.lora.adapter")
    return model


def continued_adapter(model, adapter: str, where: str):
    """The model with the LoRA adapter at `adapter` on it, trainable: training goes on from its weights, as
    LLaMA-Factory's adapter_name_or_path does (a fresh adapter would start from B = 0 again)."""
    from pathlib import Path

    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"{where}: {adapter}: no adapter_config.json; expected a LoRA adapter directory "
                          "(what peft's save_pretrained writes)")
    return PeftModel.from_pretrained(model, adapter, is_trainable=True)


def freeze(model, spec, *, keep: tuple[str, ...] = (), where: str = "freeze") -> list[str]:
    """Leave trainable only `spec.trainable_modules` of the last `spec.trainable_layers` decoder layers (the first
    |n| for a negative n) and `spec.extra_modules`, as LLaMA-Factory's freeze tuning does; return their names."""
    config = getattr(model.config, "text_config", None) or model.config
    layers = config.num_hidden_layers
    n = spec.trainable_layers
    ids = range(max(0, layers - n), layers) if n > 0 else range(min(-n, layers))
    names = [name for name, _ in model.named_parameters()]
    inside = sorted({name.split(".0.", 1)[1].split(".")[0] for name in names if ".0." in name})
    outside = sorted({name.split(".")[-2] for name in names if not re.search(r"\.\d+\.", name) and "." in name})
    modules = [spec.trainable_modules] if isinstance(spec.trainable_modules, str) else list(spec.trainable_modules)
    modules = [m.strip() for module in modules for m in module.split(",") if m.strip()]
    for module in modules:
        if module != "all" and module not in inside:
            raise ConfigError(f"{where}.trainable_modules: {module!r} is not a module of the model's layers; "
                              f"expected all or some of {', '.join(inside)}")
    for module in spec.extra_modules:
        if module not in outside:
            raise ConfigError(f"{where}.extra_modules: {module!r} is not a module outside the layers; expected "
                              f"some of {', '.join(outside)}")
    patterns = [f".{i}." if m == "all" else f".{i}.{m}" for i in ids for m in modules] + list(spec.extra_modules)
    patterns += list(keep)
    trainable = []
    for name, parameter in model.named_parameters():
        on = any(pattern in name for pattern in patterns)
        parameter.requires_grad_(on)
        if on:
            trainable.append(name)
    if not trainable:
        raise ConfigError(f"{where}: nothing is left to train (trainable_layers {n} of {layers} layers, modules "
                          f"{', '.join(modules)}); expected at least one layer or extra module")
    count = sum(p.numel() for name, p in model.named_parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("freeze: training layers %s (%s) and %s: %d of %d parameters (%.1f %%)", list(ids),
             ", ".join(modules), ", ".join(spec.extra_modules) or "nothing outside them", count, total,
             100 * count / total)
    return trainable

