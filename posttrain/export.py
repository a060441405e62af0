"""Turn a trained model into one directory any Hugging Face runtime can serve, and check it is the same model.

Training leaves a LoRA adapter beside its base, or chained adapters across
stages; vLLM, TGI and plain transformers want one standalone model. `export`
merges the adapters into the base (in fp32 unless the model keeps its own
dtype, so each weight is rounded once), casts it, and writes safetensors, the
tokenizer with its chat template, the generation config and a model card into
a temporary sibling directory that is renamed into place only when all of it,
and the verification when asked, succeeded. `verify` runs the export and the
unmerged reference (the base with the adapter applied by peft, in fp32) on
chat-templated prompts and compares their logits within what the export's
dtype can represent (posttrain/export_verify.py).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from posttrain.errors import PosttrainError
from posttrain.export_verify import (  # noqa: F401
    TOLERANCE,
    VerifyError,
    VerifyResult,
    read_prompts,
    run_verify,
    verify,
)
from posttrain.runs.ownership import remove_tree

log = logging.getLogger("posttrain")

DTYPE_NAMES = ("bf16", "fp16", "fp32")


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
    parent = _run_input(path)
    if parent is None or not (Path(parent) / "adapter_config.json").is_file():
        from posttrain.evaluation.generation import adapter_base

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


def run_of(path: str) -> tuple[Path, str, dict] | None:
    """(run directory, stage, manifest) when `path` is a posttrain run's `<run>/<stage>/model`."""
    from posttrain.runs.manifest import read_manifest

    path = Path(path)
    if path.name != "model" or not (path.parent.parent / "manifest.json").is_file():
        return None
    manifest = read_manifest(path.parent.parent) or {}
    stage = path.parent.name
    return (path.parent.parent, stage, manifest) if stage in manifest.get("stages", {}) else None


def _run_input(path: str) -> str | None:
    run = run_of(path)
    return run[2]["stages"][run[1]].get("input_model") if run else None


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

    from posttrain.models.loading import DTYPES

    try:
        model = AutoModelForCausalLM.from_pretrained(found.base, dtype=DTYPES[dtype],
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


def export(model: str, adapter: str | None = None, *, out: str | Path, dtype: str | None = None,
           verify: bool = False, prompts: str | None = None, template: str | None = None,
           trust_remote_code: bool = False, force: bool = False, exclude_stage: str | None = None,
           say: Callable[[str], None] = log.info) -> dict:
    """Merge, cast and save `model` (+ `adapter`) to `out`, with tokenizer, generation config and model card.

    `exclude_stage` leaves that stage (the export stage itself, inside a pipeline) out of the card's stage table.
    Returns what was done: dtype, lineage and, when verified, the verification figures.
    """
    from posttrain import export_card
    from posttrain.models.loading import DTYPES, load_tokenizer

    if dtype is not None and dtype not in DTYPE_NAMES:
        raise PosttrainError(f"dtype: expected one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    out = Path(out)
    found = lineage(model, adapter)
    _check_out(out, [found.base, *found.adapters], force)
    prompt_list = read_prompts(prompts) if verify else None
    tokenizer = load_tokenizer(found.tokenizer_dir, template=template, trust_remote_code=trust_remote_code)
    kept = own_dtype(found.base)
    target = dtype or kept
    say(f"loading {found.base}" + "".join(f" + {a}" for a in found.adapters) + f" (export dtype {target})")
    # merged at fp32 and rounded once, unless the model stays in its own dtype (no rounding beyond peft's merge)
    merged = load(found, target if target == kept else "fp32", trust_remote_code=trust_remote_code)
    merged = merged.to(DTYPES[target])
    _stop_at_end_of_turn(merged, tokenizer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        say(f"saving to {out}")
        merged.save_pretrained(str(tmp), max_shard_size="5GB")
        tokenizer.save_pretrained(str(tmp))
        del merged
        result = None
        if verify:
            say("verifying: the export against the unmerged reference")
            result = run_verify(tmp, found, prompt_list, trust_remote_code=trust_remote_code)
            say(f"verify {'passed' if result.passed else 'FAILED'}: {result.summary()}")
            if not result.passed:
                raise VerifyError(f"verify failed: {result.summary()}; nothing was written to {out}", result)
        summary = {"base": found.base, "adapters": found.adapters, "dtype": target,
                   "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "verify": result.as_dict() if result else None}
        card = export_card.model_card(summary, found, exclude_stage=exclude_stage)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        _move_into_place(tmp, out)
    except BaseException:
        remove_tree(tmp, out.parent)
        raise
    return summary


def _check_out(out: Path, sources, force: bool) -> None:
    if out.is_symlink():  # the old export is moved aside and deleted: never through a link, to wherever it leads
        raise PosttrainError(f"{out}: a symbolic link to {os.path.realpath(out)}; name that directory itself")
    if out.exists() and not out.is_dir():
        raise PosttrainError(f"{out}: exists and is not a directory")
    for source in sources:
        # replacing a directory that holds the model (a run directory, say) would delete it once exported
        if Path(source).exists() and out.resolve() in (Path(source).resolve(), *Path(source).resolve().parents):
            raise PosttrainError(f"{out}: holds the model being exported ({source}); write the export elsewhere")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise PosttrainError(f"{out}: not empty; pass --force to replace it")
        from posttrain.models.loading import is_model_dir

        if not is_model_dir(out):  # --out ~ --force must not delete a home directory
            raise PosttrainError(f"{out}: not a model directory (no config.json or adapter_config.json); --force "
                                 "replaces only an earlier export or model. Choose an empty or new directory")


def _move_into_place(tmp: Path, out: Path) -> None:
    """One rename puts the export in place; a replaced export is moved aside first and deleted after."""
    mask = os.umask(0)
    os.umask(mask)
    # mkdtemp and transformers' own temporary files are private (0700/0600); a server may run as another user
    for path in [tmp, *tmp.iterdir()]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
    elif out.is_dir():
        out.rmdir()
    os.rename(tmp, out)
    if old is not None:
        remove_tree(old, out.parent)


def _stop_at_end_of_turn(model, tokenizer) -> None:
    """Servers stop at generation_config's eos; the chat template ends a turn with the tokenizer's."""
    from posttrain.evaluation.generation import end_of_turn_ids

    config = model.generation_config
    ids = end_of_turn_ids(config.eos_token_id, tokenizer)
    if ids:
        config.eos_token_id = ids[0] if len(ids) == 1 else ids
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
