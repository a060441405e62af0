"""How sure a figure is: a bootstrap interval for each figure, and paired comparisons of two models.

Sixty held-out questions make a mean reward of 0.11 that another sample of
sixty could put anywhere from 0 to 0.3; a table that prints only the mean
invites a reader to see progress in noise. Every figure of an evaluation
therefore carries a 95 % percentile-bootstrap interval over its examples,
and two models evaluated on the same examples are compared pairwise:

- the mean difference (B − A) and its paired-bootstrap interval (the same
  resampled examples for both models);
- a two-sided p-value from a paired permutation test: each example's two
  scores are swapped at random, which is the null hypothesis that the
  models are exchangeable (for a mean figure, a random sign per example's
  difference).

Figures that are means of per-example scores (rewards, exact match, ROUGE,
rm accuracy) resample those scores directly; figures that are not (corpus
BLEU, the judge's figures) are recomputed on each resample from the
examples themselves, with fewer resamples. Everything is seeded, so a
rerun prints the same intervals to the last digit.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000  # for figures that are means: vectorised, cheap
RECOMPUTED_RESAMPLES = 200  # for figures recomputed on each resample (corpus BLEU, judge figures)
# figures where lower is better; every other figure is better higher
_LOWER_IS_BETTER = ("unparsable", "mean_abs_error", "error", "loss")


@dataclass
class Figure:
    """One figure of an evaluation, as a function of its examples: a mean of `values`, or `compute(units)`."""

    values: np.ndarray | None = None  # per-example scores (NaN where an example has none) when the figure is their mean
    units: Sequence | None = None  # per-example inputs of `compute` otherwise
    compute: Callable[[Sequence], float] | None = None

    def of(self, indices: np.ndarray) -> float:
        if self.values is not None:
            return _nanmean(self.values[indices])
        return float(self.compute([self.units[i] for i in indices]))


def lower_is_better(name: str) -> bool:
    return name.endswith(_LOWER_IS_BETTER)


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if len(kept) else math.nan


def _row_means(values: np.ndarray) -> np.ndarray:
    """The mean of each row, NaN entries left out (NaN for a row of NaN only)."""
    kept = ~np.isnan(values)
    count = kept.sum(axis=1)
    total = np.where(kept, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _rng(seed: int | None, *salt: str) -> np.random.Generator:
    # one stream per (seed, figure, pair): adding a figure or a model does not change another's interval
    return np.random.default_rng([int(seed or 0), *(zlib.crc32(s.encode()) for s in salt)])


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float] | None:
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def interval(figure: Figure, n: int, *, seed: int | None = 0, name: str = "", level: float = LEVEL
             ) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of `figure` over `n` examples (None for fewer than 2)."""
    if n < 2:
        return None
    rng = _rng(seed, "interval", name)
    if figure.values is not None:
        indices = rng.integers(0, n, size=(RESAMPLES, n))
        return _percentiles(_row_means(figure.values[indices]), level)
    samples = np.array([figure.of(rng.integers(0, n, size=n)) for _ in range(RECOMPUTED_RESAMPLES)])
    return _percentiles(samples, level)


@dataclass
class Comparison:
    """B against A on the same examples: B − A, its interval, the permutation p-value, and whether B is
    better by more than the noise (the interval excludes 0 on the better side)."""

    difference: float
    low: float | None
    high: float | None
    p_value: float | None
    better: bool
    worse: bool

    def as_dict(self) -> dict:
        return {"difference": self.difference, "interval": None if self.low is None else [self.low, self.high],
                "p_value": self.p_value, "better": self.better, "worse": self.worse}


def compare(a: Figure, b: Figure, n: int, *, seed: int | None = 0, name: str = "", level: float = LEVEL,
            stream: str | None = None) -> Comparison:
    """Model B against model A, both evaluated on the same `n` examples in the same order. `name` is the figure's
    (it says whether lower is better); `stream` names the resampling stream, `name` by default (an eval stage
    gives each pair of models its own)."""
    everything = np.arange(n)
    difference = b.of(everything) - a.of(everything)
    if n < 2 or math.isnan(difference):
        return Comparison(difference, None, None, None, False, False)
    rng = _rng(seed, "compare", name if stream is None else stream)
    if a.values is not None and b.values is not None:
        differences = b.values - a.values
        indices = rng.integers(0, n, size=(RESAMPLES, n))
        resampled = _row_means(b.values[indices]) - _row_means(a.values[indices])
        signs = rng.choice([-1.0, 1.0], size=(RESAMPLES, n))
        permuted = _row_means(signs * differences)
    else:
        resampled = np.array([b.of(i) - a.of(i) for i in
                              (rng.integers(0, n, size=n) for _ in range(RECOMPUTED_RESAMPLES))])
        permuted = np.array([_swapped(a, b, rng.random(n) < 0.5) for _ in range(RECOMPUTED_RESAMPLES)])
    bounds = _percentiles(resampled, level)
    permuted = permuted[~np.isnan(permuted)]
    # the observed difference counts as one of the permutations, so p is never 0
    p_value = float((1 + np.sum(np.abs(permuted) >= abs(difference) - 1e-12)) / (1 + len(permuted)))
    low, high = bounds if bounds else (None, None)
    sign = -1 if lower_is_better(name) else 1
    better = bounds is not None and (low > 0 if sign > 0 else high < 0)
    worse = bounds is not None and (high < 0 if sign > 0 else low > 0)
    return Comparison(difference, low, high, p_value, better, worse)


def _swapped(a: Figure, b: Figure, swap: np.ndarray) -> float:
    """B − A with the examples in `swap` exchanged between the two models."""
    units_a = [b.units[i] if s else a.units[i] for i, s in enumerate(swap)]
    units_b = [a.units[i] if s else b.units[i] for i, s in enumerate(swap)]
    return float(b.compute(units_b)) - float(a.compute(units_a))


def pass_at_k(n: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al., 2021): the chance that k of the n samples, drawn without
    replacement, hold at least one of the `correct` ones; 1 − C(n−c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per prompt, got {n}")
    if n - correct < k:
        return 1.0
    return 1.0 - math.comb(n - correct, k) / math.comb(n, k)


def figure_of(values: Sequence[float | None]) -> Figure:
    """A figure that is the mean of per-example `values` (None where an example has no score)."""
    return Figure(values=np.array([math.nan if v is None else float(v) for v in values], dtype=float))
