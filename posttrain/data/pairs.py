"""Preference pairs for the stages that learn from them (reward_model, dpo): every source read, ties counted out.

A Bradley-Terry model and DPO's loss both need a winner in each pair, so a tie
is dropped, and how many were is logged and returned (never silently).
"""

from __future__ import annotations

import itertools
import logging

from posttrain.data.formats import load_records
from posttrain.data.sources import resolve_sources

log = logging.getLogger("posttrain")


def load_pairs(specs, name: str, *, why: str = "a Bradley-Terry model has no tie") -> tuple[list[dict], int]:
    """The preference records of `specs` without ties, and how many ties were dropped."""
    pairs, ties = [], 0
    for source in resolve_sources(specs):
        rows = load_records(source.path, source.format, columns=source.columns, tags=source.tags,
                            split=source.split, record="preference")
        for _, record in itertools.islice(rows, source.max_samples):
            if record["tie"]:
                ties += 1
            else:
                pairs.append(record)
    if ties:
        log.warning("%s: %d tie(s) dropped (%s), %d pairs kept", name, ties, why, len(pairs))
    return pairs, ties
