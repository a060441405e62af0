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
dtype can represent (posttrain/export/verify.py).
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Callable

from posttrain.errors import PosttrainError
from posttrain.evaluation.generation import end_of_turn_ids
from posttrain.export import card as export_card
from posttrain.export.verify import (  # noqa: F401
    TOLERANCE,
    VerifyError,
    VerifyResult,
    read_prompts,
    run_verify,
    verify,
)
from posttrain.models.lineage import Lineage, lineage, load, own_dtype  # noqa: F401 (export's API)
from posttrain.models.loading import is_model_dir, load_tokenizer, resolve_dtype
from posttrain.runs.layout import run_of  # noqa: F401
from posttrain.runs.ownership import remove_tree

log = logging.getLogger("posttrain")

DTYPE_NAMES = ("bf16", "fp16", "fp32")


def export(model: str, adapter: str | None = None, *, out: str | Path, dtype: str | None = None,
           verify: bool = False, prompts: str | None = None, template: str | None = None,
           trust_remote_code: bool = False, force: bool = False, exclude_stage: str | None = None,
           say: Callable[[str], None] = log.info) -> dict:
    """Merge, cast and save `model` (+ `adapter`) to `out`, with tokenizer, generation config and model card.

    `exclude_stage` leaves that stage (the export stage itself, inside a pipeline) out of the card's stage table.
    Returns what was done: dtype, lineage and, when verified, the verification figures.
    """
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
    merged = merged.to(resolve_dtype(target))
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
    config = model.generation_config
    ids = end_of_turn_ids(config.eos_token_id, tokenizer)
    if ids:
        config.eos_token_id = ids[0] if len(ids) == 1 else ids
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
