"""posttrain's canonical RL prompt (`prompt`, `data_source`, `ground_truth`, `extra_info`) as a file format."""

from __future__ import annotations

from posttrain.data.records import validate_rl_prompt

RECORD = "rl_prompt"


def detect(row: dict) -> bool:
    return "prompt" in row and "data_source" in row and "ground_truth" in row


def to_record(row: dict, columns: dict | None = None, tags: dict | None = None) -> dict:
    return validate_rl_prompt(row)


def from_record(record: dict) -> dict:
    return record
