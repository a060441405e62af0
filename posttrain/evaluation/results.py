"""What one evaluation leaves: its metrics.json and predictions.jsonl rows, and the intervals beside each figure.

Generation (evaluate.py) and reward-model accuracy (reward_models.py) both make an EvalResult, so an eval
stage, its tables and the report treat every model alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posttrain.evaluation import metrics as metric_lib
from posttrain.evaluation.uncertainty import LEVEL, interval


@dataclass
class EvalResult:
    metrics: dict  # what metrics.json holds
    rows: list[dict]  # what predictions.jsonl holds
    out_dir: Path | None


def with_intervals(names: list[str], rows: list[dict], seed: int | None) -> dict:
    """metrics.json's `intervals` (figure -> [low, high], the 95 % bootstrap interval over the examples) and how
    they were made."""
    found = {}
    for name, figure in metric_lib.resampling_figures(names, rows).items():
        bounds = interval(figure, len(rows), seed=seed, name=name)
        if bounds is not None:
            found[name] = list(bounds)
    return {"intervals": found, "interval_method": {"level": LEVEL, "method": "percentile bootstrap over examples",
                                                    "seed": seed or 0}}


