"""Significance tests and summaries for baseline comparisons.

A latency regression gate on a shared CI box must not fail on noise, and must not pass a
real slow-down because one run was lucky. Mann-Whitney U compares whole distributions
without assuming normality (the test benchstat and Google Benchmark's compare.py use);
error rates are proportions, compared with Fisher's exact test (exact for the small counts
a few seconds of load produce). Below `min_samples` on either side we do not test at all
and say so, rather than dress up a guess as a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def prefetch_scipy() -> None:
    """Start importing scipy.stats (half a second) in the background: only a baseline
    comparison needs it, and loading a baseline comes just before reading the spans, whose
    Parquet decoding leaves the GIL free. The real import later waits for this one."""
    import importlib
    import threading

    def load() -> None:
        try:
            importlib.import_module("scipy.stats")
        except Exception:  # noqa: BLE001 - the real import, later, reports it
            pass

    threading.Thread(target=load, name="slo-import-scipy", daemon=True).start()


def _t_sf(x: float, df: int) -> float:
    """Student t's survival function: `scipy.stats.t.sf`, computed the same way (it calls
    this), from scipy.special: a slice-pair check needs nothing else of scipy, and
    scipy.stats costs a second of CPU to import (scipy.special a third of that), which a
    gate pays while its load runs."""
    from scipy import special

    return float(special.stdtr(df, -x))


def _t_isf(q: float, df: int) -> float:
    """Student t's inverse survival function: `scipy.stats.t.isf` (see `_t_sf`)."""
    from scipy import special

    return float(-special.stdtrit(df, q))


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

    # scipy-stubs types `table` as an ndarray; SciPy documents (and takes) any 2x2 array_like
    p = float(sps.fisher_exact(table, alternative="greater").pvalue)  # type: ignore[arg-type]
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

    # scipy-stubs types `table` as an ndarray; SciPy documents (and takes) any 2x2 array_like
    p = float(sps.fisher_exact(table, alternative="greater").pvalue)  # type: ignore[arg-type]
    share = f"{ca / c.size * 100:.0f}% of requests above the baseline's p{q:g} (was " \
            f"{ba / b.size * 100:.0f}%)"
    if p < alpha:
        return TestResult(p, True, f"significant ({share}; Fisher exact, {_p(p)} < {alpha:g})")
    return TestResult(p, False, f"not significant ({share}; Fisher exact, {_p(p)} >= "
                      f"{alpha:g})")


# ---------------------------------------------------------------------------------------------
# Changes from interleaved slices
#
# On a shared machine the noise comes in bursts longer than a request (another job's compile,
# a GC of the collector): requests are not independent, so request-level tests call a burst
# a regression. The gate's ABBA slices are: neighbours B C (or C B) saw the same machine, and
# the pairs are the unit of evidence. A statistic of each side is computed over the pooled
# requests (a per-slice p90 of five requests would be mostly noise), and its uncertainty comes
# from a bootstrap that resamples whole pairs, so a burst that hit one pair moves both sides
# and is counted once, as the between-pair variation it is. With 10-20 pairs a bootstrap
# percentile interval is too narrow (and unusable at the tiny levels Holm asks for), so the
# bootstrap gives only the standard error, and the interval uses Student's t with pairs - 1
# degrees of freedom; `bench/sensitivity.py` measures the false alarm rate this yields.

#: Fewest ABBA pairs with requests on both sides before a slice-level comparison is made.
MIN_PAIRS = 4
#: Bootstrap resamples of pairs for a standard error (0.7 / sqrt(2 * 400) = 3% relative
#: error of the SE: the t quantile moves more between 11 and 12 degrees of freedom).
BOOT_REPS = 400


@dataclass(frozen=True)
class Change:
    """A change of a statistic, candidate against baseline, with its standard error.

    `scale` "log": estimate is log(candidate / baseline) (a relative change, symmetric on
    the log scale); "abs": candidate - baseline (counts per request, error rates).
    """

    estimate: float
    se: float
    pairs: int
    scale: str
    stat: str

    @property
    def df(self) -> int:
        return max(1, self.pairs - 1)

    def p_greater(self, margin: float) -> float:
        """One-sided p-value of H0 "the change is at most `margin`" (t, pairs - 1 df)."""
        if not math.isfinite(self.estimate):
            return 0.0 if self.estimate > 0 else 1.0
        if self.se <= 0:
            return 0.0 if self.estimate > margin else 1.0
        return float(_t_sf((self.estimate - margin) / self.se, self.df))

    def bounds(self, tail: float) -> tuple[float, float]:
        """The interval with `tail` probability outside each end (two-sided 1 - 2 * tail)."""
        if self.se <= 0 or not math.isfinite(self.estimate):
            return self.estimate, self.estimate
        k = _t_isf(tail, self.df)
        return self.estimate - k * self.se, self.estimate + k * self.se

    def detectable(self, margin: float, level: float) -> float:
        """The smallest change (on the estimate's scale) this comparison would have called
        significant at one-sided `level`: the margin plus the t quantile's worth of standard
        errors. A true change of that size is seen about half the time; a smaller one is
        more likely missed than seen, so "not significant" says nothing about it."""
        if self.se <= 0 or not math.isfinite(self.estimate):
            return margin
        return margin + _t_isf(level, self.df) * self.se

    def natural(self, x: float) -> float:
        """A value on the estimate's scale as reported: relative change, or difference."""
        if self.scale == "log":
            return math.expm1(x) if x < 700 else math.inf
        return x


#: The statistic of the typical request the slice comparisons test instead of the median: the
#: geometric mean of the requests between the 5th and the 50th percentile. The SUT's latencies
#: are a tight body (80% within +-15%) with a long tail of lock waits; the median sits at the
#: body's upper edge, where one more or one less slow request moves it, while the body's lower
#: half is dense. Relabelled A/A windows of a 150 s gate (bench/sensitivity.py): the standard
#: error of this statistic's change is 0.55-0.65 times the median's for the 1-2 ms endpoints
#: and order-detail, with the same calibration; a pure slow-down moves both alike. A change
#: of the upper half only (p50-p90) is the p90's and the mean's to find.
BODY = "p5-50"


def _band(stat: str) -> tuple[float, float] | None:
    """'p5-50' -> (0.05, 0.5): a band of quantiles; None for 'mean' and 'pNN'."""
    if not stat.startswith("p") or "-" not in stat:
        return None
    lo, hi = stat[1:].split("-")
    return float(lo) / 100.0, float(hi) / 100.0


def _band_log_mean(v: np.ndarray, cw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Mean of log(v) (v sorted) over the quantile band [lo, hi] under per-value weights cw
    (rows x values): each value counts with the part of its weight inside the band, so the
    ends are fractional and a resample's band is exactly as wide as the sample's."""
    lv = np.log(np.maximum(v, 1e-6))  # a 0 ms span (clock resolution) as 1 ns, not -inf
    c = np.cumsum(cw, axis=1)
    total = c[:, -1:]
    inside = np.clip(np.minimum(c, hi * total) - np.maximum(c - cw, lo * total), 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (inside @ lv) / ((hi - lo) * total[:, 0])


#: Most resample x value cells one block of `_weighted_stat` holds (8 bytes each, a few copies).
_CELLS = 2_000_000


def _weighted_stat(values: np.ndarray, pair_of: np.ndarray, w: np.ndarray, stat: str
                   ) -> np.ndarray:
    """`stat` of `values` under pair weights `w` (reps x pairs): one value per row."""
    rows = max(1, _CELLS // max(1, values.size))
    if w.shape[0] > rows:  # a long gate: a few blocks of resamples rather than 1 GB at once
        return np.concatenate([_weighted_stat(values, pair_of, w[i:i + rows], stat)
                               for i in range(0, w.shape[0], rows)])
    if stat == "mean":
        k = w.shape[1]
        sums = np.bincount(pair_of, weights=values, minlength=k)
        counts = np.bincount(pair_of, minlength=k).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ sums) / (w @ counts)
    order = np.argsort(values, kind="stable")
    v, p = values[order], pair_of[order]
    band = _band(stat)
    if band is not None:
        return np.exp(_band_log_mean(v, w[:, p], *band))
    q = float(stat[1:]) / 100.0
    cw = np.cumsum(w[:, p], axis=1)
    target = q * cw[:, -1:]
    idx = (cw < target - 1e-9).sum(axis=1)  # first index whose cumulative weight reaches q
    return v[np.minimum(idx, len(v) - 1)]


def stat_of(values: np.ndarray, stat: str) -> float:
    """The statistic the slice comparisons use: 'mean', 'pNN' ('higher' percentile) or a
    band 'pLO-HI' (geometric mean of the values between those percentiles, see BODY)."""
    if values.size == 0:
        return float("nan")
    if stat == "mean":
        return float(values.mean())
    band = _band(stat)
    if band is not None:
        v = np.sort(np.asarray(values, np.float64))
        return float(np.exp(_band_log_mean(v, np.ones((1, v.size)), *band)[0]))
    return percentile(values, float(stat[1:]))


def paired_change(base: list[np.ndarray], cand: list[np.ndarray], stat: str,
                  scale: str = "log", reps: int = BOOT_REPS, seed: int = 0) -> Change | None:
    """The change of `stat` over ABBA pairs: `base[k]`, `cand[k]` are the k-th pair's values.

    Pairs with no value on one side are dropped; None when fewer than MIN_PAIRS remain. The
    estimate uses the pooled values of each side; its standard error comes from resampling
    pairs (a paired block bootstrap, fixed seed: the same data give the same verdict), scaled
    by sqrt(K / (K - 1)) because a bootstrap over K blocks underestimates the variance.
    Hand-written rather than scipy.stats.bootstrap: resampling pairs is a weight per pair,
    so all resamples of a quantile come from one sort and one cumulative sum (a few ms).
    """
    keep = [k for k in range(min(len(base), len(cand))) if len(base[k]) and len(cand[k])]
    if len(keep) < MIN_PAIRS:
        return None
    bvals = [np.asarray(base[k], np.float64) for k in keep]
    cvals = [np.asarray(cand[k], np.float64) for k in keep]
    kk = len(keep)
    bv, cv = np.concatenate(bvals), np.concatenate(cvals)
    bp = np.repeat(np.arange(kk), [len(x) for x in bvals])
    cp = np.repeat(np.arange(kk), [len(x) for x in cvals])

    def contrast(b: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
        b, c = np.asarray(b, np.float64), np.asarray(c, np.float64)
        if scale == "abs":
            return c - b
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(c) - np.log(b)

    est = float(contrast(stat_of(bv, stat), stat_of(cv, stat)))
    if scale == "log" and not math.isfinite(est):  # a zero statistic: no ratio
        return Change(est if not math.isnan(est) else 0.0, 0.0, kk, scale, stat)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(kk, np.full(kk, 1.0 / kk), size=reps).astype(np.float64)
    boot = contrast(_weighted_stat(bv, bp, w, stat), _weighted_stat(cv, cp, w, stat))
    boot = boot[np.isfinite(boot)]
    se = float(boot.std(ddof=1) * math.sqrt(kk / (kk - 1))) if boot.size > 1 else 0.0
    return Change(est, se, kk, scale, stat)


def detectable_note(comps: list[tuple[Change, float, float]], fmt: Callable[[float], str]
                    ) -> str:
    """Why a "not significant" is weak evidence when pairs are few: the smallest change the
    most sensitive of `comps` ((change, margin, one-sided level) each) could have seen,
    formatted by `fmt` on the reported scale (relative change or difference); a sentence
    with a leading blank, or "" when no comparison varied (no errors on either side: there
    is no noise to measure the sensitivity by).

    A verdict of "pass" over 5 pairs of a noisy endpoint only says the change was not
    enormous; this puts the number on it, so the reader knows to run longer."""
    live = [c for c in comps if c[0].se > 0 and math.isfinite(c[0].estimate)]
    if not live:
        return ""
    ch, margin, level = min(live, key=lambda c: c[0].natural(c[0].detectable(c[1], c[2])))
    limit = fmt(ch.natural(ch.detectable(margin, level)))
    which = f" ({ch.stat})" if ch.scale == "log" else ""
    return (f" With {ch.pairs} slice pairs only a change above {limit}{which} could be seen "
            f"at that level: run longer to see a smaller one.")


def holm(p_values: list[float], alpha: float, weights: list[float] | None = None
         ) -> list[tuple[bool, float]]:
    """Holm's step-down over one family: (rejected, one-sided level it was tested at) each.

    Holm bounds the family-wise error rate by `alpha` under any dependence between the
    tests (the p50, p90 and mean of one SLO are strongly dependent). With `weights`, the
    weighted Holm procedure (Holm 1979): a test gets the share w_i / (sum of the weights
    still in play) of alpha at each step, so a test that matters more can be given more of
    the same family-wise alpha. A test not reached because the step-down stopped earlier is
    reported at the level where it stopped, which its p-value exceeds, so "fails" and
    "interval above the threshold" always agree.
    (statsmodels' multipletests has Holm, but not the levels or weights, and is a large
    dependency.)
    """
    m = len(p_values)
    w = list(weights) if weights is not None else [1.0] * m
    if len(w) != m or any(x <= 0 for x in w):
        raise ValueError("holm: one positive weight per p-value")
    order = sorted(range(m), key=lambda i: p_values[i] / w[i])
    left = float(sum(w))
    out: list[tuple[bool, float]] = [(False, 0.0)] * m  # every entry is set below
    stopped = False
    for i in order:
        level = alpha * w[i] / left
        if not stopped and p_values[i] <= level:
            out[i] = (True, level)
            left -= w[i]
        else:
            stopped = True
            out[i] = (False, level)
    return out


def shift_or_tail(base: np.ndarray, cand: np.ndarray) -> tuple[str, float]:
    """Did the whole distribution move, or only its tail? ("shift" | "tail", share moved).

    Compares the quantiles 5%, 10%, ..., 95% of both sides: the requests affected are those
    from the lowest quantile upward whose slow-down is at least half the largest one. A
    regression of every request moves every quantile (share near 100%: "shift"); one of the
    slowest 10% (cache misses) moves only the top ones ("tail", share about 10%).
    """
    b, c = np.asarray(base, np.float64), np.asarray(cand, np.float64)
    if b.size == 0 or c.size == 0:
        return "shift", 0.0
    qs = np.arange(5, 100, 5)
    bq, cq = np.percentile(b, qs), np.percentile(c, qs)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(bq > 0, cq / bq - 1.0, 0.0)
    top = float(rel.max())
    if top <= 0:
        return "shift", 0.0
    moved = rel >= top / 2
    first = len(qs)
    for i in range(len(qs) - 1, -1, -1):
        if not moved[i]:
            break
        first = i
    if first == len(qs):  # the largest change is not at the top: count every moved quantile
        share = float(moved.mean())
    else:
        share = 1.0 - (qs[first] - 5) / 100.0
    return ("shift" if share >= 0.5 else "tail"), round(share, 2)


def abba_pairs(base_starts: list[int], cand_starts: list[int]) -> list[tuple[int, int]]:
    """Neighbouring baseline/candidate slices, by start time: [(baseline i, candidate j)].

    The gate runs B C C B B C ...: consecutive slices two by two are pairs that saw the
    same machine. Walking the merged order and pairing each slice with the next one of the
    other side keeps the pairing right when a slice is missing (no spans arrived for it);
    slices of a saved baseline from another time do not interleave and give (almost) none.
    """
    events = sorted([(t, 0, i) for i, t in enumerate(base_starts)]
                    + [(t, 1, j) for j, t in enumerate(cand_starts)])
    pairs, k = [], 0
    while k + 1 < len(events):
        a, b = events[k], events[k + 1]
        if a[1] != b[1]:
            pairs.append((a[2], b[2]) if a[1] == 0 else (b[2], a[2]))
            k += 2
        else:
            k += 1
    return pairs


# ---------------------------------------------------------------------------------------------
# Saying it with the interval (terminal, Markdown, HTML share these)


