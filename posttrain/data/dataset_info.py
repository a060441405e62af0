"""LLaMA-Factory's `dataset_info.json` registry, read as is.

Teams moving from LLaMA-Factory keep their data directory and its registry;
`resolve` turns the dataset names a recipe lists into `DataSource`s that
`load_source` streams as canonical records, with the entry's format,
columns and tags applied.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator

from posttrain.data.formats import get_format, load_records
from posttrain.errors import PosttrainError, closest

INFO_FILE = "dataset_info.json"


@dataclass
class DataSource:
    name: str
    path: str  # a local file or directory, or a hub id (read only when the source is loaded)
    format: str = "alpaca"
    columns: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    ranking: bool = False
    split: str = "train"


def _load_info(dataset_dir: str) -> tuple[str, dict]:
    info_path = os.path.join(dataset_dir, INFO_FILE)
    if not os.path.isfile(info_path):
        raise PosttrainError(
            f"{info_path}: not found; a dataset directory needs a {INFO_FILE} registering its datasets "
            "(LLaMA-Factory's format), or give the data file's path instead of a dataset name"
        )
    try:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
    except json.JSONDecodeError as e:
        raise PosttrainError(f"{info_path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(info, dict):
        raise PosttrainError(f"{info_path}: expected an object mapping dataset names to entries")
    return info_path, info


def resolve(dataset_dir: str, names: str | list[str]) -> list[DataSource]:
    """The sources for `names` (a list or "a,b") registered in dataset_dir/dataset_info.json."""
    info_path, info = _load_info(str(dataset_dir))
    if isinstance(names, str):
        names = names.split(",")
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise PosttrainError("dataset: expected at least one dataset name")
    return [_source(dataset_dir, info_path, info, name) for name in names]


def _source(dataset_dir: str, info_path: str, info: dict, name: str) -> DataSource:
    if name not in info:
        hint = closest(name, info, cutoff=0.6) or f"; it has {', '.join(info) or 'none'}"
        raise PosttrainError(f"{info_path}: no dataset named {name!r}{hint}")
    entry = info[name]
    where = f"{info_path}: {name}"
    if not isinstance(entry, dict):
        raise PosttrainError(f"{where}: expected an object with file_name or hf_hub_url")
    fmt = entry.get("formatting", "alpaca")
    try:
        get_format(fmt)
    except PosttrainError as e:
        raise PosttrainError(f"{where}.formatting: {e}") from None
    for key in ("columns", "tags"):
        if not isinstance(entry.get(key, {}), dict):
            raise PosttrainError(f"{where}.{key}: expected an object, got {type(entry[key]).__name__}")
    local = os.path.join(dataset_dir, entry["file_name"]) if entry.get("file_name") else None
    hub = entry.get("hf_hub_url") or entry.get("ms_hub_url")
    # a local copy is preferred over the hub so an offline machine still works
    path = local if local and (os.path.exists(local) or not hub) else hub
    if not path:
        raise PosttrainError(f"{where}: expected file_name, hf_hub_url or ms_hub_url")
    ranking = bool(entry.get("ranking", False))
    if ranking and fmt in ("alpaca", "sharegpt"):
        # a ranking entry holds chosen/rejected pairs in that layout: the preference format reads both layouts
        fmt = "preference"
    elif "kto_tag" in entry.get("columns", {}) and fmt in ("alpaca", "sharegpt"):
        # a KTO entry: each row one answer, its kto_tag column saying whether it is desirable
        fmt = "unpaired_preference"
    elif fmt == "alpaca" and set(entry.get("columns", {"response": None})) == {"prompt"}:
        # LLaMA-Factory's pretraining entries (c4_demo, wiki_demo): a columns block naming only the text's column
        # leaves alpaca's response unset, so the rows are raw text, which is what stage pt reads
        fmt = "text"
    return DataSource(
        name=name, path=path, format=fmt, columns=dict(entry.get("columns", {})),
        tags=dict(entry.get("tags", {})), ranking=ranking,
        split=entry.get("split", "train"),
    )


def load_source(source: DataSource, *, max_samples: int | None = None) -> Iterator[tuple[int, dict]]:
    """Stream (line, canonical record) from one registered source."""
    return load_records(source.path, source.format, columns=source.columns, tags=source.tags,
                        split=source.split, max_samples=max_samples)
