"""posttrain's canonical RL prompt (`prompt`, `data_source`, `ground_truth`, `extra_info`) as a file format.

Fields (UNKNOWN_FIELDS = "keep"): a field beside those four is kept in
`extra_info`, where the reward function sees it (a field that is in both
with different values is a RecordError); media fields are refused, since
posttrain trains text-only models.
"""

from __future__ import annotations

from posttrain.data.formats import fields
from posttrain.data.records import validate_rl_prompt
from posttrain.errors import RecordError

RECORD = "rl_prompt"
UNKNOWN_FIELDS = "keep"
_KEYS = ("prompt", "data_source", "ground_truth", "extra_info")


def detect(row: dict) -> bool:
    return "prompt" in row and "data_source" in row and "ground_truth" in row


def keep_extra(row, fmt: str, reads, extra_info) -> dict:
    """`extra_info` with the row's unread fields added (the keep rule of the rl_prompt formats)."""
    kept = fields.extra(row, fmt, reads)
    if not kept:
        return extra_info
    if not isinstance(extra_info, dict):
        return extra_info  # validate_rl_prompt names the bad extra_info
    for key, value in kept.items():
        if key in extra_info and extra_info[key] != value:
            raise RecordError(key, f"also in extra_info with another value ({extra_info[key]!r}); expected one of them")
    return {**extra_info, **kept}


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    if isinstance(row, dict):
        row = {**row, "extra_info": keep_extra(row, "rl_prompt", _KEYS, row.get("extra_info") or {})}
    return validate_rl_prompt(row)


def from_record(record: dict) -> dict:
    return record
