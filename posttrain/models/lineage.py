"""What a model directory is made of: a base and the LoRA adapters merged into it, in order, and loading it merged.

A LoRA stage started from an earlier LoRA stage names only the first base in its adapter_config.json; the
run's manifest knows the chain (runs/layout.run_of). Export, verification and vLLM generation (which needs
one merged directory) all read a model's lineage from here.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.models.loading import load_tokenizer, resolve_dtype
from posttrain.runs.layout import run_input


@dataclass
class Lineage:
    """What an export is made of: a base, the LoRA adapters merged into it in order, and the tokenizer to keep."""

    base: str
    adapters: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.adapters[-1] if self.adapters else self.base

    @property
    def tokenizer_dir(self) -> str:
        # a LoRA stage saves the tokenizer it trained with beside its adapter
        return next((a for a in reversed(self.adapters) if (Path(a) / "tokenizer_config.json").exists()), self.base)


def lineage(model: str, adapter: str | None = None) -> Lineage:
    """The base and adapters behind `model` (+ `adapter`); every input is checked before anything loads."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise PosttrainError(f"{adapter}: no adapter_config.json; expected a LoRA adapter directory "
                             "(what peft's save_pretrained writes)")
    found = _lineage(model, [])
    return Lineage(found.base, found.adapters + [_checked_adapter(adapter)]) if adapter else found


def _lineage(path: str, seen: list[str]) -> Lineage:
    _check_model_dir(path)
    if not (Path(path) / "adapter_config.json").is_file():
        return Lineage(path)
    if path in seen:
        raise PosttrainError(f"{path}: its adapters name each other as base: {' -> '.join(seen + [path])}")
    # a LoRA stage started from an earlier LoRA stage names the first base only; the run's manifest knows the chain
    parent = run_input(path)
    if parent is None or not (Path(parent) / "adapter_config.json").is_file():
        parent = adapter_base(path)
    found = _lineage(parent, seen + [path])
    return Lineage(found.base, found.adapters + [_checked_adapter(path)])


def _check_model_dir(path: str) -> None:
    root = Path(path)
    if not root.exists():
        if "/" in path and not path.startswith((".", "/", "~")):
            return  # a hub id: transformers says whether it can be loaded
        raise PosttrainError(f"{path}: no such model directory")
    if not (root / "config.json").is_file() and not (root / "adapter_config.json").is_file():
        raise PosttrainError(f"{path}: neither a model directory (no config.json) nor a LoRA adapter directory "
                             "(no adapter_config.json)")
    config = root / "config.json"
    if config.is_file():
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        if architectures and not any(a.endswith("ForCausalLM") for a in architectures):
            raise PosttrainError(f"{config}: architectures {', '.join(architectures)}; export writes causal "
                                 "language models (a reward model stays a directory for `posttrain score`)")


def _checked_adapter(path: str) -> str:
    config = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise PosttrainError(f"{path}/adapter_config.json: task_type {config['task_type']}; export merges "
                             "CAUSAL_LM adapters only")
    return path


def adapter_base(adapter: str) -> str:
    """The base model a LoRA adapter directory names (peft's base_model_name_or_path)."""
    config = Path(adapter) / "adapter_config.json"
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise PosttrainError(f"{config}: base_model_name_or_path: missing; cannot find the base model")
    return base


def own_dtype(base: str) -> str:
    """The dtype the base model's config records (fp32 when it records none)."""
    import torch
    from transformers import AutoConfig

    try:
        value = AutoConfig.from_pretrained(base).dtype
    except (OSError, ValueError) as e:
        raise PosttrainError(f"{base}: cannot read the model's config: {e}") from None
    if isinstance(value, str):
        value = getattr(torch, value, None)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(value, "fp32")


def load(found: Lineage, dtype: str = "fp32", *, merge_last: bool = True, trust_remote_code: bool = False):
    """The base with its adapters merged in order; with merge_last=False the last one stays a peft adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(found.base, dtype=resolve_dtype(dtype),
                                                     trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise PosttrainError(f"{found.base}: cannot load the base model: {e}") from None
    for i, adapter in enumerate(found.adapters):
        model = PeftModel.from_pretrained(model, adapter)
        if merge_last or i < len(found.adapters) - 1:
            try:
                model = model.merge_and_unload(safe_merge=True)  # a NaN in the adapter fails here, not in serving
            except ValueError as e:
                raise PosttrainError(f"{adapter}: merging the adapter failed: {e}") from None
    return model.eval()


def merged_copy(model: str, adapter: str | None = None, *, dtype: str | None = None,
                trust_remote_code: bool = False) -> Path:
    """`model` (+ `adapter`) merged into one model directory under a new temporary folder, with its tokenizer, in
    `dtype` (default: the base's own): what a server that loads no adapters (vLLM) needs. The caller removes the
    folder."""
    found = lineage(model, adapter)
    dtype = dtype or own_dtype(found.base)
    out = Path(tempfile.mkdtemp(prefix="posttrain-merged-")) / "model"
    load(found, dtype, trust_remote_code=trust_remote_code).save_pretrained(out)
    load_tokenizer(found.tokenizer_dir, trust_remote_code=trust_remote_code).save_pretrained(out)
    return out
