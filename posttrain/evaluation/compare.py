"""Figures of several evaluated models side by side: one row per model, one column per figure; and each model
against its input stage and the base, paired on the same examples.

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


def _with_interval(value, bounds) -> str:
    if value is None:
        return ""
    return _number(value) + (f" [{_number(bounds[0])}, {_number(bounds[1])}]" if bounds else "")


def markdown_table(by_model: dict[str, dict[str, float]], intervals: dict[str, dict] | None = None) -> str:
    """Rows: models; columns: the union of their figures, in first-seen order; each figure followed by its 95 %
    interval where `intervals` (model -> figure -> [low, high]) has one."""
    intervals = intervals or {}
    columns = list(dict.fromkeys(key for row in by_model.values() for key in row))
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for model, row in by_model.items():
        bounds = intervals.get(model, {})
        lines.append(f"| {model} | " + " | ".join(_with_interval(row.get(c), bounds.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def compare_models(pairs: list[tuple[str, str, str]], rows: dict[str, list[dict]], names: list[str],
                   seed: int | None) -> list[dict]:
    """Each (model, against, relation) pair compared figure by figure on the same examples: B − A, its paired
    bootstrap interval, the permutation p-value, and whether it is better (or worse) by more than the noise."""
    from posttrain.evaluation.metrics import resampling_figures
    from posttrain.evaluation.uncertainty import compare

    figures_of = {label: resampling_figures(names, rows[label]) for label in {m for pair in pairs for m in pair[:2]}}
    found = []
    for model, against, relation in pairs:
        if len(rows[model]) != len(rows[against]):
            continue  # not the same examples (a limit, a failed model): no paired comparison
        shared = [f for f in figures_of[model] if f in figures_of[against]]
        found.append({"model": model, "against": against, "relation": relation, "figures": {
            name: compare(figures_of[against][name], figures_of[model][name], len(rows[model]), seed=seed,
                          name=f"{name}:{against}:{model}").as_dict() for name in shared}})
    return found


def _signed(value) -> str:
    return "" if value is None else f"{value:+.4g}"


def verdict(result: dict) -> str:
    return "better" if result["better"] else "worse" if result["worse"] else "within noise"


def difference_text(result: dict) -> str:
    """One comparison as `+0.09 [-0.09, +0.26] p=0.4`: the difference, its 95 % interval, the p-value."""
    bounds = result["interval"]
    interval = f" [{_signed(bounds[0])}, {_signed(bounds[1])}]" if bounds else ""
    p = f" p={result['p_value']:.3g}" if result["p_value"] is not None else ""
    return f"{_signed(result['difference'])}{interval}{p}"


def comparison_table(comparisons: list[dict]) -> str:
    """Rows: a model against its input stage or the base; cells: the difference, its 95 % interval, the p-value
    and the verdict (better or worse by more than the noise, or within it)."""
    columns = list(dict.fromkeys(name for c in comparisons for name in c["figures"]))
    lines = ["| model | against | " + " | ".join(f"Δ {c}" for c in columns) + " |",
             "| --- | --- |" + " ---: |" * len(columns)]
    for comparison in comparisons:
        cells = []
        for column in columns:
            result = comparison["figures"].get(column)
            cells.append(f"{difference_text(result)} {verdict(result)}" if result else "")
        lines.append(f"| {comparison['model']} | {comparison['against']} ({comparison['relation']}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)
