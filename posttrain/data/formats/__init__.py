"""Outside data formats, one module each, behind one registry.

A format module converts one row of its format into a canonical record
(`to_record`, named `to_conversation` for conversation formats) and back
(`from_conversation`), says whether a row looks like its format (`detect`)
and which record type it makes (`RECORD`). Stages and tools only ever see
canonical records, so adding a format is one module plus one `register` call.
Each format also says what becomes of a field it does not read
(`UNKNOWN_FIELDS`, "refuse" or "keep": formats/fields.py), so no field is
dropped silently; tests/data/test_no_silent_loss.py holds every format to it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType
from typing import Iterator

from posttrain.data.formats import (
    agent_eval,
    alpaca,
    fields,
    judges,
    llamafactory_v1,
    medical_dialogue,
    openai,
    preference,
    rl_prompt,
    rm_gallery,
    sharegpt,
    steps,
    text,
    trialpanorama,
    unpaired_preference,
    verl,
)
from posttrain.data.io import file_kind, read_rows
from posttrain.errors import DataError, PosttrainError, RecordError, closest

FORMATS: dict[str, ModuleType] = {}
_DETECT_ORDER: list[str] = []


def register(name: str, module: ModuleType, *, aliases: tuple[str, ...] = ()) -> None:
    """Make `module` available as format `name` (and its aliases); detection tries names in order."""
    for key in (name, *aliases):
        FORMATS[key] = module
    _DETECT_ORDER.append(name)


register("verl", verl)
register("rl_prompt", rl_prompt)
register("openai", openai, aliases=("conversation", "messages"))
register("sharegpt", sharegpt)
register("alpaca", alpaca)
register("trialpanorama-study-search", trialpanorama.STUDY_SEARCH)
register("trialpanorama-sample-size", trialpanorama.SAMPLE_SIZE)
register("trialpanorama-sample-size-sft", trialpanorama.SAMPLE_SIZE_SFT)
register("rm-gallery-pairwise", judges.PAIRWISE)
register("rm-gallery-pointwise", judges.POINTWISE)
register("agent-eval", agent_eval)
register("agent-eval-no-metadata", agent_eval.NO_METADATA)
register("agent-eval-judge", agent_eval.JUDGE_PROMPTS)
register("steps", steps, aliases=("trl-stepwise",))  # the same keys in both: one module reads them
register("preference", preference, aliases=("trl-preference", "ranking"))
register("rm-gallery", rm_gallery)
register("medical-dialogue", medical_dialogue.CONVERSATION)
register("medical-dialogue-rl", medical_dialogue.RL_PROMPT)
register("text", text, aliases=("pt",))
register("unpaired_preference", unpaired_preference, aliases=("trl-unpaired", "kto"))
register("llamafactory-v1", llamafactory_v1.SFT)  # LLaMA-Factory v1's samples: content parts with a `value`
register("llamafactory-v1-pair", llamafactory_v1.PAIR)
# the canonical file format of each record type, the default target of a conversion
CANONICAL = {"conversation": "openai", "rl_prompt": "rl_prompt"}
CANONICAL["steps"] = "steps"
CANONICAL["preference"] = "preference"
CANONICAL["text"] = "text"
CANONICAL["unpaired_preference"] = "unpaired_preference"


def writer(module: ModuleType, *, validated: bool = False):
    """The function that turns a canonical record into a row of this format, or None. `validated`: the records
    come from load_records, already checked, so a conversation format need not check each one again."""
    to_row = getattr(module, "from_record", None)
    if to_row is not None:
        return to_row
    to_row = getattr(module, "from_conversation", None)
    return functools.partial(to_row, validated=True) if to_row is not None and validated else to_row


# the key only that record type's canonical shape has (records.py)
_KIND_KEYS = (("messages", "conversation"), ("data_source", "rl_prompt"), ("chosen", "preference"),
              ("completions", "steps"), ("completion", "unpaired_preference"), ("text", "text"))


def record_kind(record: dict) -> str:
    """The record type of a canonical record (from load_records): by the key only its shape has. Calling every
    record without messages an RL prompt sent a preference pair to VERL's writer, which failed on its data_source."""
    return next((kind for key, kind in _KIND_KEYS if key in record), "rl_prompt")


def target_row(to_format: str, in_path, line: int, record: dict) -> dict:
    """`record` (canonical, from load_records) as a row of `to_format`; what the format cannot hold raises
    DataError at IN_PATH:LINE."""
    target, kind = get_format(to_format), record_kind(record)
    if target.RECORD != kind:
        raise PosttrainError(f"--to: {to_format} holds {target.RECORD} records; {in_path} holds {kind} records")
    try:
        return writer(target, validated=True)(record)
    except RecordError as e:  # the target cannot hold this record (alpaca and tool turns)
        raise DataError(in_path, line, e.field, e.expected) from None


def get_format(name: str) -> ModuleType:
    key = str(name).lower()
    if key not in FORMATS:
        raise PosttrainError(f"format: unknown format {name!r}; known: {', '.join(FORMATS)}"
                             f"{closest(key, FORMATS, cutoff=0.6)}")
    return FORMATS[key]


def detect_format(row) -> str:
    if isinstance(row, dict):
        for name in _DETECT_ORDER:
            if FORMATS[name].detect(row):
                return name
        keys = ", ".join(map(str, row)) or "none"
    else:
        keys = f"not an object but {type(row).__name__}"
    raise PosttrainError(
        f"cannot tell the data format from the first record (keys: {keys}); expected messages (openai), "
        "conversations (sharegpt) or instruction + output (alpaca); name the format explicitly"
    )


def data_files(path) -> list:
    """The path itself, or the json/jsonl files of a plain directory (LLaMA-Factory allows those)."""
    try:
        kind = file_kind(path)
    except PosttrainError:
        files = sorted(p for p in Path(path).glob("*") if p.suffix.lower() in (".json", ".jsonl")) \
            if os.path.isdir(path) else []
        if not files:
            raise
        return files
    # file_kind names a missing .jsonl by its suffix; say it is missing before open() fails with a traceback
    if kind != "hub" and not os.path.exists(path):
        raise PosttrainError(f"{path}: no such file")
    return [path]


def load_records(
    path, fmt: str | None = None, *, columns: dict | None = None, tags: dict | None = None,
    split: str = "train", max_samples: int | None = None, record: str | None = None,
) -> Iterator[tuple[int, dict]]:
    """Stream (line, canonical record) from `path`; a bad record raises DataError naming FILE:LINE.

    `record` (conversation, preference, ...) rejects formats that make another record type.
    """
    module = _checked(get_format(fmt), fmt, record) if fmt else None
    _check_mapping(path, "columns", columns)
    _check_mapping(path, "tags", tags)
    try:  # a multimodal column mapping is wrong for every row: say so once, before reading any
        fields.check_columns({key: value for key, value in (columns or {}).items() if key in fields.MEDIA})
    except RecordError as e:
        raise DataError(path, None, e.field, e.expected) from None
    count = 0
    for file in data_files(path):
        for line, row in read_rows(file, split=split):
            if max_samples is not None and count >= max_samples:
                return
            if module is None:
                try:
                    name = detect_format(row)
                except PosttrainError as e:
                    raise DataError(file, line, "format", str(e)) from None
                module = _checked(get_format(name), name, record)
            for record in row_records(module, file, line, row, columns, tags):
                if max_samples is not None and count >= max_samples:
                    return
                count += 1
                yield line, record


def _check_mapping(path, name: str, mapping) -> None:
    """LLaMA-Factory's columns and tags map a name to a column or tag name (a string; null for none): anything
    else is wrong for every row, so it is refused once, before any row is read."""
    if mapping is None:
        return
    if not isinstance(mapping, dict):
        raise DataError(path, None, name, f"expected an object of names, got {type(mapping).__name__}")
    for key, value in mapping.items():
        if value is not None and not isinstance(value, str):
            raise DataError(path, None, f"{name}.{key}", f"expected a name (a string), got {type(value).__name__}")


def row_records(module: ModuleType, file, line: int, row, columns: dict | None, tags: dict | None) -> list[dict]:
    """The canonical records `module` makes of one row (a converter may make several: a judge's pair and its
    swapped copy); a bad row raises DataError at FILE:LINE."""
    try:
        converted = module.to_record(row, columns, tags)
    except RecordError as e:
        raise DataError(file, line, e.field, e.expected) from None
    return converted if isinstance(converted, list) else [converted]


def load_conversations(
    path, fmt: str | None = None, *, columns: dict | None = None, tags: dict | None = None,
    split: str = "train", max_samples: int | None = None,
) -> Iterator[tuple[int, dict]]:
    """Like `load_records`, for formats that make conversations (what SFT reads)."""
    return load_records(path, fmt, columns=columns, tags=tags, split=split, max_samples=max_samples,
                        record="conversation")


def _checked(module: ModuleType, name: str, record: str | None) -> ModuleType:
    if record and module.RECORD != record:
        raise PosttrainError(f"format: {name} makes {module.RECORD} records; expected a format for {record} records")
    return module


__all__ = ["FORMATS", "CANONICAL", "register", "writer", "get_format", "detect_format", "data_files", "load_records",
           "load_conversations"]
