"""Figures of several evaluated models side by side: one row per model, one column per figure.

A file's figures are nested (`judge` is a dict of accuracy, unparsable share,
position consistency, ...); `figures` flattens them to `judge.accuracy` and so
on, which is what the CLI's table, the eval stage's Markdown table and its
combined metrics.json show.
"""

from __future__ import annotations

# judge_metrics' counts: a column of them says how much data there was, not how good a model is
_COUNTS = ("count", "pairs")


def figures(metrics: dict) -> dict[str, float]:
    """A metrics.json's `metrics` as flat name -> number."""
    flat: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": v for key, v in value.items()
                         if key not in _COUNTS and isinstance(v, (int, float))})
        elif isinstance(value, (int, float)):
            flat[name] = value
    return flat


def _number(value) -> str:
    return "" if value is None else f"{value:.4g}"


def markdown_table(by_model: dict[str, dict[str, float]]) -> str:
    """Rows: models; columns: the union of their figures, in first-seen order."""
    columns = list(dict.fromkeys(key for row in by_model.values() for key in row))
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for model, row in by_model.items():
        lines.append(f"| {model} | " + " | ".join(_number(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
