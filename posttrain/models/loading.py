"""Load tokenizers and models the way every stage needs them.

One place decides the dtype (bf16 where the GPU computes in it; on an older GPU
fp16, or fp32 weights under fp16 mixed precision for training; fp32 on CPU), whether
remote code may run (never unless the config says so), which chat template
applies, and how LoRA / QLoRA are attached, so stages do not each re-decide.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from posttrain import machine as gpu  # what the machine can do, and what each GPU-only option needs
from posttrain.errors import ConfigError, PosttrainError
from posttrain.models.templates import TEMPLATE_TOKENS, get_template

log = logging.getLogger(__name__)

DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # torch's names for ours


def resolve_dtype(name: str = "auto"):
    """The torch dtype for bf16, fp16, fp32 or auto (bf16 on a GPU that computes in it, else fp16; fp32 on a CPU)."""
    import torch  # here: importing posttrain's modules loads no torch until a model is touched

    if name != "auto":
        if name not in DTYPE_NAMES:
            raise ConfigError(f"dtype: expected auto, bf16, fp16 or fp32, got {name!r}")
        return getattr(torch, DTYPE_NAMES[name])
    if gpu.cuda():
        return torch.bfloat16 if gpu.bf16_native() else torch.float16
    return torch.float32


def training_dtype(name: str = "auto") -> str:
    """The dtype a training stage loads its model in. `auto` on a GPU without native bf16 is fp32: such a GPU
    trains in fp16 mixed precision (posttrain.training.defaults), and torch's gradient scaler refuses fp16
    weights ("Attempting to unscale FP16 gradients")."""
    if name != "auto":
        return name
    return "bf16" if gpu.bf16_native() else "fp32"


def _missing_model(path: str, what: str, error: Exception) -> PosttrainError:
    local = Path(path).exists() or path.startswith((".", "/"))
    where = "a local directory" if local else "a local directory or a hub id (the hub needs a network)"
    return PosttrainError(f"{path}: cannot load the {what}; expected {where}: {error}")


def load_tokenizer(path: str, *, template: str | None = None, trust_remote_code: bool = False):
    """The tokenizer at `path`, with the named chat template when given; it must end with one."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise _missing_model(str(path), "tokenizer", e) from None
    if template:
        tokenizer.chat_template = get_template(template)
        vocab = tokenizer.get_vocab()
        missing = [t for t in TEMPLATE_TOKENS[template] if t not in vocab]
        if missing:
            log.warning(
                "template %s writes %s, which the tokenizer at %s does not have as tokens; they are split into "
                "ordinary tokens", template, ", ".join(missing), path,
            )
    elif not tokenizer.chat_template:
        raise ConfigError(
            f"{path}: the tokenizer has no chat template; name one with `template:` (chatml, qwen, llama3, mistral)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path: str,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    quantize_4bit: bool = False,
    task: str = "causal_lm",
    **head,
):
    """A model for training or generation; `quantize_4bit` is QLoRA's base (CUDA + bitsandbytes only).
    `task` picks the auto class; `head` (num_labels, id2label, ...) configures a classifier's new head."""
    import torch
    import transformers

    auto = {
        "causal_lm": transformers.AutoModelForCausalLM,
        "sequence_classification": transformers.AutoModelForSequenceClassification,
        "token_classification": transformers.AutoModelForTokenClassification,
    }[task]
    kwargs = {"dtype": resolve_dtype(dtype), "trust_remote_code": trust_remote_code, **head}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantize_4bit:
        gpu.require_qlora()
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=(kwargs["dtype"] if kwargs["dtype"] != torch.float32
                                    else torch.bfloat16 if gpu.bf16_native() else torch.float16),
        )
    if is_adapter_dir(path):
        return _merged_adapter(path, auto, kwargs)
    try:
        return auto.from_pretrained(str(path), **kwargs)
    except OSError as e:
        raise _missing_model(str(path), "model", e) from None


def _merged_adapter(path, auto, kwargs, chain: tuple[str, ...] = ()):
    """A LoRA stage's output as the next stage's input: its base with the adapter merged in."""
    import json

    from peft import PeftModel

    if str(Path(path).resolve()) in chain:
        raise PosttrainError(f"{path}/adapter_config.json: base_model_name_or_path leads back to {path}; "
                             "expected a chain of adapters ending in a model directory")
    chain = (*chain, str(Path(path).resolve()))

    base = json.loads((Path(path) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise PosttrainError(f"{path}/adapter_config.json: base_model_name_or_path: missing; cannot find the base model")
    if kwargs.get("quantization_config") is not None:
        raise ConfigError(f"{path}: cannot merge a LoRA adapter into a 4-bit base; export the merged model first")
    if is_adapter_dir(base):  # a LoRA stage trained on an earlier LoRA stage's merged output
        model = _merged_adapter(base, auto, kwargs, chain)
    else:
        try:
            model = auto.from_pretrained(base, **kwargs)
        except OSError as e:
            raise _missing_model(base, "base model of the adapter", e) from None
    return PeftModel.from_pretrained(model, str(path)).merge_and_unload()


def lora_config(lora, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig from the stage's `lora:` block (default: every linear layer)."""
    from peft import LoraConfig

    targets = target_modules(lora.target_modules)
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha if lora.alpha is not None else 2 * lora.r,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type=task_type,
        modules_to_save=lora.modules_to_save,
        use_rslora=lora.rslora,
        use_dora=lora.dora,
        init_lora_weights=lora.init,
        ensure_weight_tying=bool(lora.modules_to_save),
    )


def target_modules(targets: str | list[str]) -> str | list[str]:
    """peft's target_modules from a config's: `all`/`all-linear` is every linear layer, `a,b` a list."""
    if targets in ("all", "all-linear"):
        return "all-linear"
    return [t.strip() for t in targets.split(",") if t.strip()] if isinstance(targets, str) else targets


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def is_model_dir(path: str | Path) -> bool:
    """A transformers model or a peft adapter: what `--force` and init-model may replace."""
    return (Path(path) / "config.json").is_file() or is_adapter_dir(path)


def no_grad(function):
    """torch.no_grad() as a decorator that imports torch when the function first runs, not when it is defined."""

    @functools.wraps(function)
    def without_gradients(*args, **kwargs):
        import torch

        with torch.no_grad():
            return function(*args, **kwargs)

    return without_gradients
