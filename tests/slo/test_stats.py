"""Significance tests: shifts are found, noise is not, small samples are said to be small."""

from __future__ import annotations

import numpy as np

from slo.stats import (
    downsample,
    mann_whitney_greater,
    percentile,
    proportion_greater,
    tail_greater,
)


def test_percentile_is_an_observed_value() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 95) in values
    assert np.isnan(percentile([], 50))


def test_downsample_keeps_shape_and_extremes() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(0, 1, 50_000)
    small = downsample(values, 1000)
    assert len(small) <= 1000 and small == sorted(small)
    assert small[0] == round(values.min(), 4) and small[-1] == round(values.max(), 4)
    assert abs(np.median(small) - np.median(values)) < 0.05 * np.median(values)
    assert downsample([3.0, 1.0]) == [1.0, 3.0]


def test_mann_whitney_finds_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(2)
    base = rng.lognormal(1.0, 0.3, 300)
    slower = rng.lognormal(1.0, 0.3, 300) * 1.3
    same = rng.lognormal(1.0, 0.3, 300)
    hit = mann_whitney_greater(base, slower)
    assert hit.significant is True and hit.p_value < 0.01
    assert hit.note.startswith("significant (Mann-Whitney U")
    miss = mann_whitney_greater(base, same)
    assert miss.significant is False and miss.note.startswith("not significant")
    # One-sided: faster is never a regression.
    assert mann_whitney_greater(base, base * 0.5).significant is False


def test_too_few_samples_is_said_plainly() -> None:
    r = mann_whitney_greater([1.0] * 5, [10.0] * 5, min_samples=20)
    assert r.p_value is None and r.significant is None
    assert r.note.startswith("too few samples to test (5 baseline, 5 candidate")
    assert proportion_greater(0, 5, 5, 5).note.startswith("too few samples")


def test_equal_samples_are_not_significant() -> None:
    assert mann_whitney_greater([2.0] * 50, [2.0] * 50).significant is False


def test_proportions() -> None:
    assert proportion_greater(0, 500, 100, 500).significant is True
    assert proportion_greater(5, 500, 7, 500).significant is False
    assert proportion_greater(50, 500, 10, 500).significant is False  # fewer errors


def test_tail_test_sees_a_slower_tail_that_ranks_hide() -> None:
    rng = np.random.default_rng(3)
    base = rng.lognormal(0.0, 0.2, 400)
    cand = rng.lognormal(0.0, 0.2, 400)
    cand[:80] += 40.0  # a fifth of the requests (cache misses) now scan a table
    r = tail_greater(base, cand, 90)
    assert r.significant is True and "of requests above the baseline's p90" in r.note
    assert tail_greater(base, rng.lognormal(0.0, 0.2, 400)).significant is False
    few = tail_greater(base[:40], cand[:40])
    assert few.p_value is None and "need 100 each" in few.note
