"""One set of rules for every number a person reads (slo/units.py)."""

from __future__ import annotations

import math

import pytest

from slo import units


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0.042, "0.042 ms"), (0.0, "0 ms"), (3.214, "3.21 ms"), (41.23, "41.2 ms"),
     (412.4, "412 ms"), (12_345.0, "12.3 s"), (None, "-"), (math.nan, "-"), (math.inf, "-")],
)
def test_duration_precision_fits_its_size(ms, text):
    assert units.duration_ms(ms) == text


@pytest.mark.parametrize(
    ("rel", "text"),
    [(0.042, "+4.2%"), (-0.12, "-12%"), (8.83, "+883%"), (11.0, "+1,100%"), (0.0, "+0.0%"),
     (None, "-")],
)
def test_change_is_signed_with_thousands_separators(rel, text):
    assert units.change(rel) == text


def test_interval_reads_like_the_issue_example():
    assert units.interval(8.83, 6.10, 11.0, 0.99) == "+883% [+610%, +1,100%], 99%"
    assert units.interval(0.1, 0.05, 0.15) == "+10% [+5.0%, +15%]"


@pytest.mark.parametrize(
    ("share", "text"), [(0.015, "1.50%"), (0.125, "12.5%"), (0.0, "0%"), (1.0, "100%")]
)
def test_share_is_a_percentage(share, text):
    assert units.share(share) == text


def test_counts_are_plain_numbers():
    assert units.count(12) == "12"
    assert units.count(12.0) == "12"
    assert units.count(2.5) == "2.5"
    assert units.count(1204) == "1,204"
    assert units.count(True) == "-"  # a bool is not a count


def test_budget_of_a_regression_is_an_allowed_increase_in_the_same_words_everywhere():
    lat = {"kind": "regression", "objective": "latency_regression", "unit": "ms", "budget": 0.2}
    err = {"kind": "regression", "objective": "error_rate_regression", "unit": "ratio",
           "budget": 0.01}
    cnt = {"kind": "regression", "objective": "db_queries_regression", "unit": "count",
           "budget": 0}
    assert units.budget(lat) == "+20% vs baseline"
    assert units.budget(err) == "+1 pt"
    assert units.budget({**err, "budget": 0.005}) == "+0.5 pts"
    assert units.budget(cnt) == "+0"
    assert units.budget({"kind": "objective", "unit": "ms", "budget": 400}) == "400 ms"
    assert units.budget({"kind": "objective", "unit": "ratio", "budget": 0.01}) == "1.00%"


def test_result_change_reads_like_the_issue() -> None:
    x = {"stat": "p90", "change": 8.83, "ci_low": 6.1, "ci_high": 11.0, "confidence": 0.99}
    assert units.result_change(x, "ms") == "p90 +883% [+610%, +1,100%], 99%"
    assert units.result_change({"change": 1.0, "ci_low": 0.98, "ci_high": 1.02,
                                "confidence": 0.9996}, "count") == "+1.00 [+0.98, +1.02], 99.96%"
    assert units.result_change({"stat": "p50", "change": 0.04}, "ms") == "p50 +4.0%"
    assert units.result_change({"change": 0.005, "ci_low": 0.001, "ci_high": 0.009,
                                "confidence": 0.99}, "ratio") == "+0.5 pts [+0.1 pts, +0.9 pts], 99%"
