"""Figures of several evaluated models side by side: one row per model, one column per figure; and each model
against its input stage and the base, paired on the same examples.

A file's figures are nested (`judge` is a dict of accuracy, unparsable share,
position consistency, ...); `figures` flattens them to `judge.accuracy` and so
on, which is what the CLI's table, the eval stage's Markdown table and its
combined metrics.json show.

Beside the table stand the baselines: what a model that ignores its input
scores on a figure (judge accuracy: always the most common label;
reward-model accuracy: a coin flip, 0.5). They are figures of the data, the
same for every model, so they are a line under the table, not a column, and
it names each model whose 95 % interval does not lie above them.
"""

from __future__ import annotations

from posttrain.evaluation.metrics import PAIR_METRICS, resampling_figures
from posttrain.evaluation.uncertainty import compare

# judge_metrics' figures of the data (counts, the majority baseline) are no column: they say what the data is,
# not how good a model is
from posttrain.rewards.judges import DATA_FIGURES

BASELINES = {"judge.accuracy": "majority-class baseline (always the most common label)",
             "rm_accuracy": "chance baseline (a coin flip on each non-tie pair)",
             "preference_accuracy": "chance baseline (a coin flip on each non-tie pair)",
             "implicit_reward_accuracy": "chance baseline (a coin flip on each non-tie pair)"}
NOT_ABOVE = "not above it (95 % interval's low end at or below it)"
ALL_ABOVE = "every model's 95 % interval lies above it"


def figures(metrics: dict) -> dict[str, float]:
    """A metrics.json's `metrics` as flat name -> number."""
    flat: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{key}": v for key, v in value.items()
                         if key not in DATA_FIGURES and isinstance(v, (int, float))})
        elif isinstance(value, (int, float)):
            flat[name] = value
    return flat


def baselines(metrics: dict) -> dict[str, float]:
    """A metrics.json's `metrics` as figure -> its baseline: judge.accuracy's majority-class baseline
    (judge_metrics' `majority_baseline`), 0.5 for the pair metrics (rm_accuracy, preference_accuracy, ...)."""
    found = {}
    judge = metrics.get("judge")
    if isinstance(judge, dict) and isinstance(judge.get("majority_baseline"), (int, float)):
        found["judge.accuracy"] = judge["majority_baseline"]
    for name in PAIR_METRICS:
        if isinstance(metrics.get(name), (int, float)):
            found[name] = 0.5
    return found


def stage_baselines(models: dict) -> dict[str, float]:
    """The baselines of an eval stage's models (its metrics.json's `models`); they answer the same examples, so
    they share them."""
    found: dict[str, float] = {}
    for result in models.values() if isinstance(models, dict) else ():
        if isinstance(result, dict) and isinstance(result.get("metrics"), dict):
            for name, value in baselines(result["metrics"]).items():
                found.setdefault(name, value)
    return found


def not_above(value, bounds, baseline) -> bool:
    """Whether a figure's 95 % interval does not lie above its baseline: its low end (the value itself where it has
    no interval) at or below it, or not a number."""
    low = bounds[0] if bounds else value
    return not (isinstance(low, (int, float)) and low > baseline)


def not_above_baselines(by_model: dict[str, dict], intervals: dict[str, dict] | None,
                        found: dict[str, float]) -> dict[str, list[str]]:
    """Per baseline of a figure the table shows, the models whose interval does not lie above it."""
    intervals = intervals or {}
    return {name: [m for m, row in by_model.items() if name in row
                   and not_above(row[name], intervals.get(m, {}).get(name), baseline)]
            for name, baseline in found.items() if any(name in row for row in by_model.values())}


def baseline_text(name: str, baseline: float) -> str:
    """`majority-class baseline (always the most common label): judge.accuracy 0.55`."""
    return f"{BASELINES.get(name, 'baseline')}: {name} {_number(baseline)}"


def _number(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _with_interval(value, bounds) -> str:
    if value is None:
        return ""
    return _number(value) + (f" [{_number(bounds[0])}, {_number(bounds[1])}]" if bounds else "")


def markdown_table(by_model: dict[str, dict[str, float]], intervals: dict[str, dict] | None = None,
                   baselines: dict[str, float] | None = None) -> str:
    """Rows: models; columns: the union of their figures, in first-seen order; each figure followed by its 95 %
    interval where `intervals` (model -> figure -> [low, high]) has one. Under it, a line per figure with a
    baseline (figure -> value) naming the models whose interval does not lie above it."""
    intervals = intervals or {}
    columns = list(dict.fromkeys(key for row in by_model.values() for key in row))
    lines = ["| model | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for model, row in by_model.items():
        bounds = intervals.get(model, {})
        lines.append(f"| {model} | " + " | ".join(_with_interval(row.get(c), bounds.get(c)) for c in columns) + " |")
    for name, models in not_above_baselines(by_model, intervals, baselines or {}).items():
        lines += ["", f"{baseline_text(name, baselines[name])}; "
                      + (f"{NOT_ABOVE}: {', '.join(models)}" if models else ALL_ABOVE)]
    return "\n".join(lines)


def compare_models(pairs: list[tuple[str, str, str]], rows: dict[str, list[dict]], names: list[str],
                   seed: int | None) -> list[dict]:
    """Each (model, against, relation) pair compared figure by figure on the same examples: B − A, its paired
    bootstrap interval, the permutation p-value, and whether it is better (or worse) by more than the noise."""
    figures_of = {label: resampling_figures(names, rows[label]) for label in {m for pair in pairs for m in pair[:2]}}
    found = []
    for model, against, relation in pairs:
        if len(rows[model]) != len(rows[against]):
            continue  # not the same examples (a limit, a failed model): no paired comparison
        shared = [f for f in figures_of[model] if f in figures_of[against]]
        found.append({"model": model, "against": against, "relation": relation, "figures": {
            # the figure's own name decides which way is better (a lower unparsable share is); the stream is the pair's
            name: compare(figures_of[against][name], figures_of[model][name], len(rows[model]), seed=seed,
                          name=name, stream=f"{name}:{against}:{model}").as_dict() for name in shared}})
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
