"""What a format does with the fields of a row it does not read: never drop one silently.

A field the reader skips is data the user meant to train on and does not: a
tool list, a KTO label, an image. So every format follows one of two rules,
named by its module's `UNKNOWN_FIELDS` and written in its docstring:

- "refuse": a field the format does not read is a RecordError naming it (with
  what to do for LLaMA-Factory's known fields: images, kto_tag, tools, ...).
- "keep": it goes into the record (rl_prompt's `extra_info`), where a reward
  function can see it.

Under both, a bookkeeping field (an id, a source tag, metadata: nothing a
model is trained on) is ignored with a warning, once per format and field,
and an empty field (null, "", [], {}) is accepted: it holds nothing to lose.
Media (images, videos, audios) are refused under both rules: posttrain trains
text-only models, and a row that has them is not the row the user thinks.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from posttrain.errors import RecordError

log = logging.getLogger("posttrain")

MEDIA = {"images": "<image>", "videos": "<video>", "audios": "<audio>"}
# Fields that say where a row came from, never what to learn; ignoring one loses no training signal.
BOOKKEEPING = {key: "bookkeeping, not trained on" for key in (
    "id", "idx", "index", "uid", "uuid", "unique_id", "prompt_id", "conversation_id", "source", "dataset",
    "category", "task_category", "metadata", "meta", "url", "timestamp")}
# LLaMA-Factory's fields (dataset_info.json `columns`) that posttrain reads only in some formats.
HINTS = {
    "kto_tag": "a KTO label (LLaMA-Factory's columns.kto_tag): read the data with format kto for a KTO stage",
    "chosen": "one side of a preference pair: read the data with format preference (dataset_info.json: "
              "\"ranking\": true) for a DPO or reward stage",
    "tools": "a tool list, and {record} records hold none: drop it, or train tool use with SFT "
             "(format sharegpt, alpaca or openai)",
    "history": "alpaca's earlier [user, assistant] turns: read the data with format alpaca, or put the turns in "
               "the conversation",
}
HINTS["rejected"] = HINTS["chosen"]
_warned: dict[tuple[str, str], str] = {}  # (format, field): why, each warned about once


def media_hint(key: str) -> str:
    return (f"{key} input (LLaMA-Factory's multimodal column); posttrain trains text-only models; drop the column "
            f"(and the {MEDIA[key]} placeholders) or use a vision-language toolkit")


def is_empty(value: Any) -> bool:
    """Whether a field holds nothing: null, blank, an empty list or object (or its JSON text, as "[]")."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in ("", "[]", "{}")
    if hasattr(value, "__len__") and not isinstance(value, (bytes, bytearray)):
        try:
            return len(value) == 0
        except TypeError:
            return False
    return False


def check_columns(columns: Mapping | None, reads: Iterable[str] = ()) -> None:
    """Refuse a `columns` mapping that names data the format cannot train on: media always, and a KTO label or
    a preference side the format does not read."""
    columns, reads = columns or {}, set(reads)
    for key, column in columns.items():
        if key in MEDIA and column:
            raise RecordError(f"columns.{key}", media_hint(key))
        if key in ("kto_tag", "chosen", "rejected") and column and column not in reads:
            raise RecordError(f"columns.{key}", HINTS[key])


def check(row: Any, fmt: str, reads: Iterable[str], *, record: str = "conversation", columns: Mapping | None = None,
          ignores: Mapping[str, str] = BOOKKEEPING) -> None:
    """The "refuse" rule: raise RecordError for the first field of `row` that `fmt` does not read.

    `reads` names the fields the format reads (after its `columns`); `ignores` the ones it skips on purpose,
    each with why (warned about once). A row that is not an object is left to the converter to refuse.
    """
    check_columns(columns, reads)
    if not isinstance(row, dict):
        return
    reads = {key for key in reads if key}
    for key, value in row.items():
        if key in reads or is_empty(value):
            continue
        if key in MEDIA:
            raise RecordError(key, media_hint(key))
        if key in ignores:
            warn(fmt, key, ignores[key])
            continue
        if key in HINTS:
            raise RecordError(key, HINTS[key].format(record=record))
        expected = ", ".join(sorted(reads))
        raise RecordError(key, f"a field the {fmt} format does not read (it reads {expected}); drop it, or map it "
                          "to one of those with dataset_info.json columns")


def extra(row: Any, fmt: str, reads: Iterable[str], *, columns: Mapping | None = None) -> dict:
    """The "keep" rule: the fields of `row` that `fmt` does not read, to keep on the record (media refused)."""
    check_columns(columns, reads)
    if not isinstance(row, dict):
        return {}
    reads = set(reads)
    kept = {}
    for key, value in row.items():
        if key in reads or is_empty(value):
            continue
        if key in MEDIA:
            raise RecordError(key, media_hint(key))
        kept[key] = value
    return kept


def warn(fmt: str, key: str, why: str) -> None:
    """Log that `fmt` ignores `key`, the first time in this process."""
    if (fmt, key) not in _warned:
        _warned[fmt, key] = why
        log.warning("%s: ignoring the field %r (%s)", fmt, key, why)


def warned() -> dict[tuple[str, str], str]:
    """The fields warned about so far in this process: a worker process hands them to its parent, which warns."""
    return dict(_warned)
