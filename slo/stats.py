"""Significance tests and summaries for baseline comparisons.

A latency regression gate on a shared CI box must not fail on noise, and must not pass a
real slow-down because one run was lucky. Mann-Whitney U compares whole distributions
without assuming normality (the test benchstat and Google Benchmark's compare.py use);
error rates are proportions, compared with Fisher's exact test (exact for the small counts
a few seconds of load produce). Below `min_samples` on either side we do not test at all
and say so, rather than dress up a guess as a p-value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Most samples kept per distribution in baselines and reports.
MAX_SAMPLES = 2000


@dataclass(frozen=True)
class TestResult:
    p_value: float | None  # None: not tested (too few samples)
    significant: bool | None
    note: str  # "significant (p=...)", "not significant (p=...)", "too few samples (...)"


def percentile(values: np.ndarray | list[float], q: float) -> float:
    """The q-th percentile (0..100), 'higher' method: an observed value, never interpolated.

    For a budget check an observed sample is easier to defend than an interpolation, and
    p100 is exactly the maximum.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return float("nan")
    return float(np.percentile(a, q, method="higher"))


def downsample(values: np.ndarray | list[float], k: int = MAX_SAMPLES) -> list[float]:
    """At most k values that keep the distribution's shape: evenly spaced order statistics.

    Sorted; the minimum and maximum are always kept.
    """
    a = np.sort(np.asarray(values, dtype=np.float64))
    if a.size > k:
        a = a[np.unique(np.linspace(0, a.size - 1, k).round().astype(np.int64))]
    return np.round(a, 4).tolist()  # vectorised: a Python round() per value cost 16 ms


def _p(p: float) -> str:
    return f"p={p:.2g}" if p >= 1e-4 else "p<0.0001"


def mann_whitney_greater(baseline: np.ndarray | list[float], candidate: np.ndarray | list[float],
                         alpha: float = 0.01, min_samples: int = 20) -> TestResult:
    """Is the candidate stochastically greater (slower) than the baseline?"""
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if b.size < min_samples or c.size < min_samples:
        return TestResult(None, None, f"too few samples to test ({b.size} baseline, {c.size} "
                          f"candidate; need {min_samples} each)")
    if np.ptp(np.concatenate([b, c])) == 0:
        return TestResult(1.0, False, "not significant (all samples equal)")
    from scipy import stats as sps  # lazy: 0.5 s of import, only with a baseline

    p = float(sps.mannwhitneyu(c, b, alternative="greater", method="asymptotic").pvalue)
    if p < alpha:
        return TestResult(p, True, f"significant (Mann-Whitney U, {_p(p)} < {alpha:g})")
    return TestResult(p, False, f"not significant (Mann-Whitney U, {_p(p)} >= {alpha:g})")


def proportion_greater(base_events: int, base_n: int, cand_events: int, cand_n: int,
                       alpha: float = 0.01, min_samples: int = 20) -> TestResult:
    """Is the candidate's event rate greater than the baseline's? (one-sided Fisher exact)"""
    if base_n < min_samples or cand_n < min_samples:
        return TestResult(None, None, f"too few samples to test ({base_n} baseline, {cand_n} "
                          f"candidate; need {min_samples} each)")
    table = [[cand_events, cand_n - cand_events], [base_events, base_n - base_events]]
    from scipy import stats as sps  # lazy: 0.5 s of import, only with a baseline

    p = float(sps.fisher_exact(table, alternative="greater").pvalue)
    if p < alpha:
        return TestResult(p, True, f"significant (Fisher exact, {_p(p)} < {alpha:g})")
    return TestResult(p, False, f"not significant (Fisher exact, {_p(p)} >= {alpha:g})")


def tail_greater(baseline: np.ndarray | list[float], candidate: np.ndarray | list[float],
                 q: float = 90.0, alpha: float = 0.01, min_tail: int = 10) -> TestResult:
    """Are more candidate requests slower than the baseline's q-th percentile than before?

    The test for a tail regression (only some requests got slower: cache misses after an
    index was dropped), where a rank test over the whole distribution is blind. Fisher exact
    on "above the baseline's p{q}" counts; needs `min_tail` expected tail samples per side,
    so a p90 test needs 100 requests on each side: a p90 of 40 samples is 4 requests.
    """
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    need = int(np.ceil(round(min_tail / (1 - q / 100.0), 6)))
    if b.size < need or c.size < need:
        return TestResult(None, None, f"too few samples for a p{q:g} test ({b.size} baseline, "
                          f"{c.size} candidate; need {need} each)")
    thr = float(np.percentile(b, q, method="higher"))
    ba, ca = int((b > thr).sum()), int((c > thr).sum())
    table = [[ca, c.size - ca], [ba, b.size - ba]]
    from scipy import stats as sps  # lazy: 0.5 s of import, only with a baseline

    p = float(sps.fisher_exact(table, alternative="greater").pvalue)
    share = f"{ca / c.size * 100:.0f}% of requests above the baseline's p{q:g} (was " \
            f"{ba / b.size * 100:.0f}%)"
    if p < alpha:
        return TestResult(p, True, f"significant ({share}; Fisher exact, {_p(p)} < {alpha:g})")
    return TestResult(p, False, f"not significant ({share}; Fisher exact, {_p(p)} >= "
                      f"{alpha:g})")
