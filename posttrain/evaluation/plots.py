"""The report's charts, as PNG data URIs: a report must be one file that opens anywhere, offline.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so
drawing holds no global state and does not change the backend of a
process that also plots (a notebook, the training stage's plot_loss).
"""

from __future__ import annotations

import base64
import functools
import io
import math
from dataclasses import dataclass

_SIZE = (5.4, 3.3)  # inches; at _DPI a chart is about 600 x 360 px, two fit side by side on a laptop screen
_DPI = 110
_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f")
_BEST, _OTHER = "#16a34a", "#94a3b8"


@dataclass
class Series:
    label: str
    steps: list[float]
    values: list[float]
    markers: bool = False  # evaluations are sparse: show each one
    emphasis: bool = False  # the total of several rewards


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=_SIZE, dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, color="#e5e7eb", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure, axes


def _plain(text: str) -> str:
    """Names come from configs and data; a `$` would start matplotlib's math mode (and can fail to parse)."""
    return str(text).replace("$", r"\$")


def _data_uri(figure, bottom: float = 0.15) -> str:
    # fixed margins, not tight_layout: it doubles the time of a chart, and the labels here are short
    figure.subplots_adjust(left=0.12, right=0.98, top=0.9, bottom=bottom)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _moving_average(values: list[float], window: int) -> list[float]:
    """Centred, so the smoothed curve does not lag behind the raw one; shorter at the ends."""
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    half = window // 2
    return [(sums[min(i + half + 1, len(values))] - sums[max(i - half, 0)])
            / (min(i + half + 1, len(values)) - max(i - half, 0)) for i in range(len(values))]


def line_chart(title: str, series: list[Series], ylabel: str = "") -> str:
    """Values against training step; a long noisy series is drawn faint with its moving average on top."""
    return _line_chart(title, tuple((s.label, tuple(s.steps), tuple(s.values), s.markers, s.emphasis)
                                    for s in series), ylabel)


# an eval stage draws the same charts for its own report and the run's: each is drawn once
@functools.lru_cache(maxsize=128)
def _line_chart(title: str, frozen: tuple, ylabel: str) -> str:
    series = [Series(label, list(steps), list(values), markers, emphasis)
              for label, steps, values, markers, emphasis in frozen]
    figure, axes = _figure()
    for i, line in enumerate(series):
        color = "#111827" if line.emphasis else _COLORS[i % len(_COLORS)]
        width = 2.2 if line.emphasis else 1.5
        if line.markers or len(line.steps) < 2:
            axes.plot(line.steps, line.values, "o-", color=color, linewidth=width, markersize=4,
                      label=_plain(line.label))
        elif len(line.steps) > 30:
            window = max(len(line.steps) // 15, 3) | 1  # odd: centred on a step
            axes.plot(line.steps, line.values, color=color, linewidth=0.8, alpha=0.3)
            axes.plot(line.steps, _moving_average(line.values, window), color=color, linewidth=width,
                      label=_plain(f"{line.label} (mean of {window})"))
        else:
            axes.plot(line.steps, line.values, color=color, linewidth=width, label=_plain(line.label))
    axes.set_title(_plain(title), fontsize=11, loc="left")
    axes.set_xlabel("step", fontsize=9)
    if ylabel:
        axes.set_ylabel(ylabel, fontsize=9)
    axes.tick_params(labelsize=8)
    if any(line.label for line in series):
        axes.legend(fontsize=8, frameon=False, loc="best")
    return _data_uri(figure)


def bar_chart(title: str, models: list[str], values: list[float | None], best: set[int]) -> str:
    """One figure across models, the best bar(s) in green and each bar labelled with its value."""
    return _bar_chart(title, tuple(models), tuple(values), frozenset(best))


@functools.lru_cache(maxsize=128)
def _bar_chart(title: str, models: tuple, values: tuple, best: frozenset) -> str:
    figure, axes = _figure()
    axes.grid(False, axis="x")
    values = [v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]
    heights = [0.0 if v is None else float(v) for v in values]
    colors = [_BEST if i in best else _OTHER for i in range(len(models))]
    bars = axes.bar(range(len(models)), heights, color=colors, width=0.6)
    axes.bar_label(bars, labels=["n/a" if v is None else f"{v:.4g}" for v in values], fontsize=8, padding=2)
    axes.axhline(0, color="#6b7280", linewidth=0.8)
    low, high = min(heights + [0.0]), max(heights + [0.0])
    room = (high - low) * 0.15 or 0.5  # for the value labels above (and below) the bars, clear of the title
    axes.set_ylim(low - room if low < 0 else 0, high + room if high > 0 or low == 0 else room)
    pad = max(0.0, (3 - len(models)) / 2)  # one or two models: bars as wide as for three, centred
    axes.set_xlim(-0.6 - pad, len(models) - 0.4 + pad)
    axes.set_xticks(range(len(models)))
    long_names = max((len(m) for m in models), default=0) * len(models) > 48
    axes.set_xticklabels([_plain(m) if len(m) <= 24 else _plain(m[:23]) + "…" for m in models], fontsize=8,
                         rotation=30 if long_names else 0, ha="right" if long_names else "center")
    axes.set_title(_plain(title), fontsize=11, loc="left")
    axes.tick_params(axis="y", labelsize=8)
    return _data_uri(figure, bottom=0.3 if long_names else 0.12)


# how fast evaluation ran, not how well the model did
_EVAL_SPEED = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_num_tokens"}
_MAX_EVAL_CHARTS = 6


def _series(rows: list[dict], key: str, label: str, **style) -> Series | None:
    points = [(row["current_steps"], row[key]) for row in rows  # a diverged run logs inf/nan: no axis for those
              if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
              and isinstance(row.get("current_steps"), (int, float))]
    if not points:
        return None
    steps, values = zip(*points)
    return Series(label, list(steps), list(values), **style)


def training_charts(rows: list[dict]) -> list[tuple[str, str]]:
    """(title, data URI) of each chart a trainer_log.jsonl supports: loss, GRPO rewards, eval metrics."""
    charts = []
    losses = [s for s in (_series(rows, "loss", "train loss"), _series(rows, "eval_loss", "eval loss", markers=True))
              if s]
    if losses:
        charts.append(("loss", line_chart("loss", losses)))
    keys = list(dict.fromkeys(key for row in rows for key in row))
    rewards = [_series(rows, key, key[len("rewards/"):-len("/mean")]) for key in keys
               if key.startswith("rewards/") and key.endswith("/mean")]
    rewards = [s for s in rewards if s]
    total = _series(rows, "reward", "total reward", emphasis=True)
    if total and len(rewards) != 1:
        rewards.append(total)
    if rewards or total:
        charts.append(("reward", line_chart("mean reward per reward function", rewards or [total])))
    evals = [key for key in keys if key.startswith("eval_") and key not in _EVAL_SPEED]
    for key in evals[:_MAX_EVAL_CHARTS]:
        name = key[len("eval_"):]
        lines = [s for s in (_series(rows, name, f"train {name}"), _series(rows, key, f"eval {name}", markers=True))
                 if s]
        charts.append((key, line_chart(key.replace("_", " ", 1), lines)))
    return charts
