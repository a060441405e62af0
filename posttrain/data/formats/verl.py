"""VERL's RL parquet rows, both ways.

A row is `data_source`, `prompt` (messages), `ability`, `reward_model:
{style, ground_truth}` and `extra_info`, as VERL's `main_ppo` reads it and
as the seeds' RL data is stored. posttrain reads them into rl_prompt records
and writes rl_prompt records back, so a posttrain GRPO dataset can be handed
to VERL unchanged.

Fields (UNKNOWN_FIELDS = "keep"): a field beside those five is kept in
`extra_info` (and so written back there); media fields are refused, since
posttrain trains text-only models.
"""

from __future__ import annotations

import re

from posttrain.data.formats.rl_prompt import keep_extra
from posttrain.data.records import plain_values, validate_rl_prompt
from posttrain.errors import RecordError

RECORD = "rl_prompt"
UNKNOWN_FIELDS = "keep"
_KEYS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
_SPLIT = re.compile(r"_(train|val|validation|test)$")


def detect(row: dict) -> bool:
    return "data_source" in row and "reward_model" in row


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    row = plain_values(row)
    if not isinstance(row, dict):
        raise RecordError("record", f"expected a JSON object, got {type(row).__name__}")
    extra_info = row.get("extra_info") or {}
    if not isinstance(extra_info, dict):
        raise RecordError("extra_info", f"expected an object, got {type(extra_info).__name__}")
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
        raise RecordError("reward_model.ground_truth", "missing; expected {style, ground_truth}")
    extra = keep_extra(row, "verl", _KEYS, dict(extra_info))
    if row.get("ability"):
        extra.setdefault("ability", row["ability"])
    return validate_rl_prompt({"prompt": row.get("prompt"), "data_source": row.get("data_source"),
                               "ground_truth": reward_model["ground_truth"], "extra_info": extra})


def from_record(record: dict) -> dict:
    extra = dict(record.get("extra_info") or {})
    ability = extra.pop("ability", None) or _SPLIT.sub("", record["data_source"])
    return {"data_source": record["data_source"], "prompt": record["prompt"], "ability": ability,
            "reward_model": {"style": "rule", "ground_truth": record["ground_truth"]}, "extra_info": extra}
