"""LLaMA-Factory v1 recipes (`examples/v1/*`): `model:`, `peft_config:`, `train_dataset:`, run as they are.

v1 is LLaMA-Factory's rewrite: a recipe names the model with `model:`, its method with plugin blocks
(`peft_config: {name: lora|freeze, ...}`, `quant_config`, `optim_config`, `dist_config`, `kernel_config`), and its
data with `train_dataset:`, a YAML of datasets (`path`, `source`, `converter: alpaca|sharegpt|pair`, `split`,
`size`) or one file of v1 samples (content parts with a `value`: posttrain/data/formats/llamafactory_v1.py). The
command picks the trainer (`llamafactory-cli sft|dpo|rm`); posttrain reads it from the data (pairs train DPO,
or ORPO / SimPO by `pref_loss`), and a recipe may say `stage: rm` (or `stage=rm` on the command line) for a
reward model.

v1 trains with plain torch AdamW (weight decay 0.01) at a constant learning rate, logging every step, bf16 and
activation checkpointing on: the stage gets the same, where TRL's defaults differ. As for v0 recipes, every key
not applied is in one summary with its reason, and one that changes what is trained is an error unless
`compat: {ignore: [...]}` or `--allow-ignored` says otherwise (unapplied.py).
"""

from __future__ import annotations

from pathlib import Path

from posttrain.config.yaml_text import read_yaml_file
from posttrain.data.formats.llamafactory_v1 import detect_kind
from posttrain.data.io import read_rows
from posttrain.errors import PosttrainError, cut
from posttrain.integrations.llamafactory import unapplied
from posttrain.integrations.llamafactory.recipe_values import pipeline_name

CONVERTERS = {"alpaca": "alpaca", "sharegpt": "sharegpt", "pair": "preference", None: None}
TRAINER = {"micro_batch_size": "per_device_train_batch_size", "cutoff_len": "max_length",
           "learning_rate": "learning_rate", "num_train_epochs": "num_train_epochs", "max_steps": "max_steps",
           "max_grad_norm": "max_grad_norm", "seed": "seed", "logging_steps": "logging_steps",
           "save_steps": "save_steps", "save_total_limit": "save_total_limit",
           "enable_activation_checkpointing": "gradient_checkpointing", "full_determinism": "full_determinism",
           "pref_beta": "beta", "ld_alpha": "ld_alpha"}
# v1's own defaults where TRL's differ: torch AdamW's weight decay, no schedule, a log line per step
DEFAULTS = {"weight_decay": 0.01, "lr_scheduler_type": "constant", "logging_steps": 1, "gradient_checkpointing": True}
PREF_STAGES = {"sigmoid": "dpo", "orpo": "orpo", "simpo": "simpo"}
REPORTED = {
    "kernel_config": "LLaMA-Factory's kernel plugins (Liger and others) change speed, not the model",
    "init_config": "how LLaMA-Factory places the weights while loading; posttrain loads them itself",
    "dist_config": "a distributed engine: posttrain launches with --nproc/--nnodes and a stage's fsdp: or "
                   "deepspeed: (docs/distributed.md); the same model trains",
    "dp_size": "a parallel layout posttrain's launcher sets", "cp_size": "a parallel layout posttrain's launcher sets",
    "cp_mode": "a parallel layout posttrain's launcher sets", "mp_replicate_size": "a parallel layout",
    "mp_shard_size": "a parallel layout", "dist_timeout": "a distributed timeout posttrain's launcher sets",
    "batching_workers": "a loading detail posttrain sets itself",
    "sample_backend": "a setting of LLaMA-Factory's chat sampler; `posttrain chat` takes its own",
    "max_new_tokens": "a setting of LLaMA-Factory's chat sampler; `posttrain chat` takes its own",
    "resume_from_checkpoint": "posttrain resumes an interrupted stage from its last checkpoint by itself",
    "save_ckpt_as_hf": "posttrain saves every stage's model in Hugging Face format",
    "bf16": "needs a CUDA GPU and there is none; this machine trains in fp32",
}


def is_recipe(raw: dict) -> bool:
    own = "stages" not in raw and "type" not in raw and "model_name_or_path" not in raw
    return own and ("train_dataset" in raw or ("model" in raw and "peft_config" in raw))


def to_pipeline(raw: dict, warn, fail, report, cuda, allowed: set[str]) -> dict:
    """The raw posttrain pipeline of a v1 recipe; `warn`/`fail`/`report` as in the v0 translation, `allowed` the
    keys that change training to go on without (compat.ignore)."""

    def refuse(key, why):
        if key in allowed:
            warn(key, f"{why} (compat.ignore: trained without it)")
        else:
            fail(key, f"{why}; {unapplied.how_to_go_on([key])}")

    recipe = dict(raw)
    if "train_dataset" not in recipe:
        fail("train_dataset", "missing. A v1 recipe without one merges an adapter (`llamafactory-cli merge`): "
                              "`posttrain export` does that")
    data = _datasets(recipe.pop("train_dataset"), "train_dataset", warn, fail, refuse)
    evaluation = (_datasets(recipe.pop("eval_dataset"), "eval_dataset", warn, fail, refuse)
                  if "eval_dataset" in recipe else None)
    kind = recipe.pop("stage", None) or _kind(data)
    if kind == "dpo":
        loss = recipe.pop("pref_loss", "sigmoid")
        if loss not in PREF_STAGES:
            fail("pref_loss", f"{loss!r}: expected one of {', '.join(PREF_STAGES)}")
        kind = PREF_STAGES[loss]
    elif kind == "rm":
        kind = "reward_model"
    elif kind != "sft":
        fail("stage", f"{kind!r}: a v1 recipe trains sft, dpo or rm")
    top = {"model": recipe.pop("model", None), "output_dir": recipe.pop("output_dir", "outputs")}
    if top["model"] is None:
        fail("model", "missing; the model to train (a directory or hub id)")
    for key in ("trust_remote_code", "seed"):
        if key in recipe:
            top[key] = recipe[key]
    stage = {"name": kind, "type": kind, "data": data, "trainer": dict(DEFAULTS), "finetuning": "full"}
    if evaluation:
        stage["eval_data"] = evaluation
    trainer = stage["trainer"]
    _method(recipe.pop("peft_config", None), recipe.pop("quant_config", None), stage, warn, fail)
    _optimizer(recipe.pop("optim_config", None), stage, fail, refuse)
    if recipe.pop("lr_scheduler_config", None) is not None:
        refuse("lr_scheduler_config", "LLaMA-Factory v1 registers no scheduler plugin")
    _attention(recipe.pop("flash_attn", "sdpa"), top, cuda, warn)
    _batching(recipe, trainer, fail, refuse)
    if recipe.pop("model_class", "llm") != "llm":
        fail("model_class", f"{raw['model_class']!r}: posttrain trains text-only causal LMs (llm)")
    if recipe.pop("custom_chat_template", None):
        refuse("custom_chat_template", "changes how every example is rendered (posttrain's `template:` names its "
                                       "own templates, or the tokenizer's is used)")
    if "bf16" in recipe:
        bf16 = recipe.pop("bf16")
        if bf16 and cuda():
            trainer["bf16"], top["dtype"] = True, "bf16"
        elif bf16:
            warn("bf16", REPORTED["bf16"])
    for key, value in recipe.items():
        if key in TRAINER:
            trainer[TRAINER[key]] = value
        elif key == "trust_remote_code":  # read into top above; seed goes to both
            continue
        elif key in REPORTED:
            if value is not None:
                warn(key, REPORTED[key])
        else:
            warn(key, "not a key of LLaMA-Factory v1's recipes")
    report()
    return {"name": pipeline_name(top["output_dir"], kind), **top, "stages": [stage]}


def _datasets(value, key: str, warn, fail, refuse) -> list[dict]:
    """The DataSpecs of a v1 train_dataset: a YAML of datasets, or one file."""
    if not isinstance(value, str):
        fail(key, "expected a path: a YAML of datasets or a data file")
    if not value.endswith((".yaml", ".yml")):
        return [{"path": value, **_v1_format(value)}]
    if not _is_file(value):
        fail(key, f"{cut(value, 200)}: no such file (a dataset YAML on the hub is not read; download it first)")
    infos = read_yaml_file(Path(value))
    if not isinstance(infos, dict) or not infos:
        fail(key, f"{value}: expected a mapping of dataset names to {{path, source, converter, split, size}}")
    specs = []
    for name, info in infos.items():
        where = f"{key} {value}: {name}"
        if not isinstance(info, dict) or "path" not in info:
            fail(where, "expected {path, source, converter, split, size}")
        unknown = set(info) - {"path", "source", "converter", "split", "size", "weight", "streaming"}
        if unknown:
            fail(f"{where}.{sorted(unknown)[0]}", "not a v1 dataset key (path, source, converter, split, size)")
        if info.get("weight") not in (None, 1, 1.0):
            refuse("weight", f"{where}.weight resamples the dataset by weight, which posttrain does not")
        if info.get("converter") not in CONVERTERS:
            fail(f"{where}.converter", f"{info['converter']!r}: posttrain reads alpaca, sharegpt and pair")
        if info.get("source", "local") not in ("local", "hf_hub"):
            fail(f"{where}.source", f"{info['source']!r}: posttrain reads local files and the Hugging Face hub")
        if info.get("streaming"):
            warn(f"{where}.streaming", "posttrain reads every file as a stream of rows anyway; its rows are "
                                       "shuffled as a whole dataset's, not within a buffer")
        spec = {"path": str(info["path"]), "split": str(info.get("split", "train"))}
        form = CONVERTERS[info.get("converter")]
        spec.update({"format": form} if form else _v1_format(spec["path"]))
        if info.get("size"):
            spec["max_samples"] = int(info["size"])
            warn(f"{where}.size", f"read as max_samples {spec['max_samples']}, the first rows; where the dataset has "
                                  "fewer, LLaMA-Factory repeats its rows up to size, and posttrain does not")
        specs.append(spec)
    return specs


def _v1_format(path: str) -> dict:
    """A file of v1 samples reads as format llamafactory-v1 (or -pair); other files are detected as usual."""
    try:
        first = next((row for _, row in read_rows(path)), None) if _is_file(path) else None
    except PosttrainError:
        return {}  # the data check reports the file itself, with its line
    kind = detect_kind(first)
    return {"format": {"sft": "llamafactory-v1", "dpo": "llamafactory-v1-pair"}[kind]} if kind else {}


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # a name the system refuses (too long): no file of that name
        return False


def _kind(specs: list[dict]) -> str:
    pairs = {spec.get("format") in ("preference", "llamafactory-v1-pair") for spec in specs}
    return "dpo" if pairs == {True} else "sft"


def _method(peft, quant, stage: dict, warn, fail) -> None:
    if quant is not None and peft is None:
        fail("quant_config", "quantizes the frozen base of a LoRA adapter: give peft_config {name: lora} too")
    if peft is None:
        return
    if not isinstance(peft, dict) or peft.get("name") not in ("lora", "freeze"):
        fail("peft_config.name", "expected lora or freeze")
    peft = dict(peft)
    if peft.pop("name") == "freeze":
        stage["finetuning"] = "freeze"
        extra = peft.pop("freeze_extra_modules", None) or []
        stage["freeze"] = {"trainable_layers": peft.pop("freeze_trainable_layers", 2),
                           "trainable_modules": peft.pop("freeze_trainable_modules", "all"),
                           "extra_modules": [extra] if isinstance(extra, str) else list(extra)}
        if not peft.pop("cast_trainable_params_to_fp32", True):
            warn("peft_config.cast_trainable_params_to_fp32", "posttrain trains the unfrozen layers in fp32")
    else:
        stage["finetuning"] = "lora"
        targets = peft.pop("target_modules", "all")
        lora = {"r": peft.pop("r", 8), "alpha": peft.pop("lora_alpha", 16), "dropout": peft.pop("lora_dropout", 0.05),
                "target_modules": "all-linear" if targets == "all" else targets,
                "rslora": peft.pop("use_rslora", False), "dora": peft.pop("use_dora", False)}
        if peft.get("modules_to_save"):
            lora["modules_to_save"] = peft.pop("modules_to_save")
        adapter = peft.pop("adapter_name_or_path", None)
        if adapter:
            if isinstance(adapter, list) and len(adapter) != 1:
                fail("peft_config.adapter_name_or_path", "posttrain goes on training one adapter")
            lora["adapter"] = adapter[0] if isinstance(adapter, list) else adapter
        stage["lora"] = lora
    for key in list(peft):
        if key.startswith("export_") or key == "infer_dtype":
            warn(f"peft_config.{key}", "an export setting; `posttrain export` takes its own options")
        elif peft[key] not in (None, False):
            fail(f"peft_config.{key}", "not a key of LLaMA-Factory v1's lora or freeze plugin")
    if quant is not None:
        if isinstance(quant, dict) and set(quant) - {"name", "quantization_bit"}:
            fail(f"quant_config.{sorted(set(quant) - {'name', 'quantization_bit'})[0]}", "not a key posttrain reads "
                 "(it quantizes with bitsandbytes' 4-bit NF4, double quantization on); expected name, quantization_bit")
        if stage["finetuning"] != "lora" or not isinstance(quant, dict) or quant.get("quantization_bit", 4) != 4 \
                or quant.get("name", "auto") not in ("auto", "bnb"):
            fail("quant_config", "posttrain quantizes a LoRA stage's base to 4 bits with bitsandbytes "
                                 "({name: bnb, quantization_bit: 4})")
        stage["finetuning"] = "qlora"


def _optimizer(config, stage: dict, fail, refuse) -> None:
    if config is None:
        return
    if not isinstance(config, dict) or config.get("name") != "muon":
        fail("optim_config.name", "LLaMA-Factory v1's optimizer plugin is muon (AdamW without optim_config)")
    stage["optimizer"] = "muon"
    if "wd" in config:
        stage["trainer"]["weight_decay"] = config["wd"]
    if "adamw_betas" in config:
        stage["trainer"]["adam_beta1"], stage["trainer"]["adam_beta2"] = config["adamw_betas"]
    if "adamw_eps" in config:
        stage["trainer"]["adam_epsilon"] = config["adamw_eps"]
    own = {k: v for k, v in config.items() if k not in ("name", "wd", "adamw_betas", "adamw_eps", "lr")}
    defaults = {"momentum": 0.95, "nesterov": True, "ns_steps": 5}  # torch's Muon, which posttrain uses
    changed = [k for k, v in own.items() if defaults.get(k, object()) != v]
    for key in changed:
        refuse(f"optim_config.{key}", f"posttrain's Muon is torch's with its defaults "
                                      f"({', '.join(f'{k} {v}' for k, v in defaults.items())})")


def _attention(value, top: dict, cuda, warn) -> None:
    if value in ("sdpa", None):
        return
    if value == "eager":
        top["attn_implementation"] = "eager"
    elif value == "flash_attention_2" and cuda():
        top["attn_implementation"] = "flash_attention_2"
    else:
        warn("flash_attn", f"{value}: needs a CUDA GPU and the flash_attn package; the default attention is used")


def _batching(recipe: dict, trainer: dict, fail, refuse) -> None:
    strategy = recipe.pop("batching_strategy", "normal")
    if strategy in ("padding_free", "dynamic_padding_free"):
        trainer["packing"] = True  # sequences side by side, attention kept within each: posttrain's exact packing
    if strategy in ("dynamic_batching", "dynamic_padding_free"):
        refuse("batching_strategy", f"{strategy} batches by a token budget, which posttrain does not")
    elif strategy not in ("normal", "padding_free"):
        fail("batching_strategy", f"{strategy!r}: expected normal or padding_free")
    micro, total = recipe.get("micro_batch_size", 1), recipe.pop("global_batch_size", None)
    if total:
        if total % micro:
            fail("global_batch_size", f"{total} is not a multiple of micro_batch_size {micro}")
        trainer["gradient_accumulation_steps"] = total // micro  # for one process; divide by --nproc for more
