"""posttrain/evaluation/uncertainty.py: intervals that cover, p-values that are calibrated, pass@k exact."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from posttrain.evaluation.uncertainty import Figure, compare, figure_of, interval, pass_at_k


def test_the_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = random.Random(0)
    covered = 0
    for trial in range(300):
        values = [1.1 if rng.random() < 0.3 else 0.0 for _ in range(60)]
        low, high = interval(figure_of(values), 60, seed=trial)
        covered += low <= 0.33 <= high
    assert 0.88 <= covered / 300 <= 0.99, covered


def test_an_interval_is_the_same_for_the_same_seed_and_exact_for_a_constant():
    values = figure_of([0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert interval(values, 8, seed=3, name="m") == interval(values, 8, seed=3, name="m")
    assert interval(values, 8, seed=3, name="m") != interval(values, 8, seed=4, name="m")
    assert interval(figure_of([0.5] * 10), 10) == (0.5, 0.5)
    assert interval(figure_of([1.0]), 1) is None


def test_a_clear_improvement_is_better_with_a_small_p_and_identical_models_are_within_noise():
    rng = random.Random(1)
    a = [rng.choice([0.0, 1.1, -2.0]) for _ in range(60)]
    improved = compare(figure_of(a), figure_of([x + 1.0 for x in a]), 60, name="reward:x")
    assert improved.difference == pytest.approx(1.0) and improved.better and not improved.worse
    assert improved.low == pytest.approx(1.0) and improved.p_value < 0.001
    same = compare(figure_of(a), figure_of(a), 60, name="reward:x")
    assert same.difference == 0 and same.p_value == 1.0 and not same.better and not same.worse
    worse = compare(figure_of(a), figure_of([x - 0.5 for x in a]), 60, name="reward:x")
    assert worse.worse and not worse.better


def test_lower_is_better_for_the_unparsable_share():
    a, b = figure_of([1.0] * 30 + [0.0] * 30), figure_of([0.0] * 60)
    result = compare(a, b, 60, name="judge.unparsable")
    assert result.difference == -0.5 and result.better and not result.worse


def test_the_permutation_p_value_is_calibrated_under_the_null():
    rng = random.Random(2)
    small = 0
    for trial in range(200):
        a = [rng.gauss(0, 1) for _ in range(40)]
        b = [rng.gauss(0, 1) for _ in range(40)]
        small += compare(figure_of(a), figure_of(b), 40, seed=trial).p_value < 0.05
    assert small / 200 <= 0.1, small


def test_a_recomputed_figure_is_compared_by_resampling_its_examples():
    def share_of_yes(units):
        return sum(u == "yes" for u in units) / len(units)

    a = Figure(units=["no"] * 40, compute=share_of_yes)
    b = Figure(units=["yes"] * 30 + ["no"] * 10, compute=share_of_yes)
    result = compare(a, b, 40, name="judge.accuracy")
    assert result.difference == 0.75 and result.better and result.p_value < 0.01
    low, high = interval(b, 40, name="judge.accuracy")
    assert low < 0.75 < high


@pytest.mark.parametrize("n, k", [(1, 1), (4, 1), (4, 2), (5, 3), (8, 8)])
def test_pass_at_k_is_the_chance_that_k_of_n_samples_hold_a_correct_one(n, k):
    for correct in range(n + 1):
        samples = [True] * correct + [False] * (n - correct)
        draws = list(itertools.combinations(samples, k))
        assert pass_at_k(n, correct, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))
    with pytest.raises(ValueError, match="pass@3 needs at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_nan_examples_are_left_out_of_a_mean_figure():
    figure = figure_of([1.0, None, 0.0, None])
    assert figure.of(np.arange(4)) == 0.5
